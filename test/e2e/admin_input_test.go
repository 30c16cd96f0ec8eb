package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Requests the admin API must refuse, or accept, as it documents: a bare
// token is no bearer token, read-only fields in a body are ignored, and the
// campaign routes keep the schema's limit.
func TestAdminAPIInputRules(t *testing.T) {
	h := start(t, nil)
	rc := newReceiver(t, nil)
	h.createWebhook(webhookConfig("org1", "sb1", rc.URL))

	for _, auth := range []string{token, "Basic " + token, "Bearer", "Bearer" + token} {
		req, _ := http.NewRequest("GET", h.api+"/v1/webhooks", nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %.12q...: %d, want 401", auth, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("GET", h.api+"/v1/webhooks", nil)
	req.Header.Set("Authorization", "bearer "+token) // the scheme is case-insensitive
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("lower-case bearer: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// A config read with GET goes back with PUT as it is, read-only fields
	// and all; nonsense in them is ignored too.
	var got map[string]any
	if code := h.call("GET", "/v1/webhooks/org1/sb1", nil, &got); code != http.StatusOK {
		t.Fatalf("GET: %d", code)
	}
	got["name"] = "edited"
	if code := h.call("PUT", "/v1/webhooks/org1/sb1", got, nil); code != http.StatusOK {
		t.Errorf("PUT of what GET returned: %d", code)
	}
	got["createdAt"] = "not a date"
	if code := h.call("PUT", "/v1/webhooks/org1/sb1", got, nil); code != http.StatusOK {
		t.Errorf("PUT with createdAt \"not a date\": %d, want 200 (read-only, ignored)", code)
	}

	// The campaign routes keep the schema's maxItems, and a config at its
	// limits, read with GET, goes back with PUT (the body limit holds it).
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = strconv.Itoa(i) + strings.Repeat("c", 124)
	}
	full := webhookConfig("org2", "sb1", rc.URL)
	full["campaigns"] = ids
	h.createWebhook(full)
	var e struct {
		Error struct{ Code, Field string }
	}
	if code := h.call("PUT", "/v1/webhooks/org2/sb1/campaigns/one-more", nil, &e); code != http.StatusConflict || e.Error.Field != "campaigns" {
		t.Errorf("the 1,001st campaign: %d %+v, want 409 naming campaigns", code, e)
	}
	if code := h.call("PUT", "/v1/webhooks/org2/sb1/campaigns/"+ids[42], nil, nil); code != http.StatusOK {
		t.Errorf("enabling a campaign already in a full list: %d, want 200", code)
	}
	got = nil
	if code := h.call("GET", "/v1/webhooks/org2/sb1", nil, &got); code != http.StatusOK {
		t.Fatalf("GET: %d", code)
	}
	if code := h.call("PUT", "/v1/webhooks/org2/sb1", got, nil); code != http.StatusOK {
		t.Errorf("PUT back a config with %d campaigns: %d", len(ids), code)
	}
	if code := h.call("DELETE", "/v1/webhooks/org2/sb1/campaigns/"+ids[42], nil, nil); code != http.StatusOK {
		t.Errorf("disabling a campaign of a full list: %d, want 200", code)
	}
}
