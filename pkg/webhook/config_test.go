package webhook

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/feedbackd/feedbackd/pkg/netguard"
)

const good = `{"imsOrg":"org1","sandbox":{"id":"sb1","name":"prod"},"name":"n","channels":["email"],"url":"https://hooks.example.com/feedback"}`

func TestDecodeDefaults(t *testing.T) {
	c, _, err := Decode(context.Background(), []byte(good), Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.Type != AuthNone || !c.Enabled || len(c.Campaigns) != 1 || c.Campaigns[0] != AllCampaigns {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c.Key() != "org1/sb1" {
		t.Fatalf("Key = %q", c.Key())
	}
}

func TestDecodeFieldErrors(t *testing.T) {
	edit := func(old, new string) string { return strings.Replace(good, old, new, 1) }
	tests := []struct {
		name, body, field string
		policy            Policy
	}{
		{"not json", `{`, "", Policy{}},
		{"missing url", edit(`,"url":"https://hooks.example.com/feedback"`, ``), "url", Policy{}},
		{"missing sandbox id", edit(`"id":"sb1",`, ``), "sandbox.id", Policy{}},
		{"unknown field", edit(`"name":"n"`, `"name":"n","colour":"red"`), "colour", Policy{}},
		{"bad channel", edit(`["email"]`, `["push"]`), "channels.0", Policy{}},
		{"no channels", edit(`["email"]`, `[]`), "channels", Policy{}},
		{"duplicate channels", edit(`["email"]`, `["sms","sms"]`), "channels", Policy{}},
		{"http refused", edit(`https://hooks`, `http://hooks`), "url", Policy{}},
		{"relative url", edit(`https://hooks.example.com/feedback`, `/feedback`), "url", Policy{}},
		{"credentials in url", edit(`https://hooks`, `https://u:p@hooks`), "url", Policy{}},
		{"internationalized host", edit(`hooks.example.com`, `hooks.bücher.example`), "url", Policy{}},
		{"loopback ip", edit(`hooks.example.com`, `127.0.0.1`), "url", Policy{}},
		{"metadata ip", edit(`hooks.example.com`, `169.254.169.254`), "url", Policy{}},
		{"mapped loopback", edit(`hooks.example.com`, `[::ffff:127.0.0.1]`), "url", Policy{}},
		{"localhost", edit(`hooks.example.com`, `localhost:8443`), "url", Policy{}},
		{"jwt without algorithm", edit(`"name":"n"`, `"name":"n","auth":{"type":"jwt"}`), "auth.algorithm", Policy{}},
		{"unknown auth", edit(`"name":"n"`, `"name":"n","auth":{"type":"basic"}`), "auth.type", Policy{}},
		{"reserved claim", edit(`"name":"n"`, `"name":"n","auth":{"type":"jwt","algorithm":"ES256","claims":{"sub":"x"}}`), "auth.claims.sub", Policy{}},
		{"bad lifetime", edit(`"name":"n"`, `"name":"n","auth":{"type":"jwt","algorithm":"ES256","expiresIn":"2h"}`), "auth.expiresIn", Policy{}},
		{"short HS256 secret", edit(`"name":"n"`, `"name":"n","auth":{"type":"jwt","algorithm":"HS256","secret":"tooshort"}`), "auth.secret", Policy{}},
		{"key of the wrong kind", edit(`"name":"n"`, `"name":"n","auth":{"type":"jwt","algorithm":"RS256","privateKey":"not pem"}`), "auth.privateKey", Policy{}},
		{"oauth2 without client", edit(`"name":"n"`, `"name":"n","auth":{"type":"oauth2","tokenUrl":"https://auth.example.com/t"}`), "auth.clientId", Policy{}},
		{"oauth2 token url private", edit(`"name":"n"`, `"name":"n","auth":{"type":"oauth2","tokenUrl":"https://10.0.0.1/t","clientId":"c"}`), "auth.tokenUrl", Policy{}},
		{"reserved header", edit(`"name":"n"`, `"name":"n","headers":{"Webhook-Signature":"x"}`), "headers.Webhook-Signature", Policy{}},
		{"host header", edit(`"name":"n"`, `"name":"n","headers":{"Host":"x"}`), "headers.Host", Policy{}},
		{"header newline", edit(`"name":"n"`, `"name":"n","headers":{"X-A":"a\r\nX-B: b"}`), "headers.X-A", Policy{}},
		{"header bad name", edit(`"name":"n"`, `"name":"n","headers":{"X A":"a"}`), "headers.X A", Policy{}},
		{"bad org", edit(`"org1"`, `"org/1"`), "imsOrg", Policy{}},
		{"wildcard plus ids", edit(`"name":"n"`, `"name":"n","campaigns":["*","c1"]`), "campaigns", Policy{}},
		{"bad campaign id", edit(`"name":"n"`, `"name":"n","campaigns":["a b"]`), "campaigns.0", Policy{}},
		{"dot-dot campaign id", edit(`"name":"n"`, `"name":"n","campaigns":["a",".."]`), "campaigns.1", Policy{}},
		// What the delivery transport cannot send is refused when saved.
		{"header vertical tab", edit(`"name":"n"`, `"name":"n","headers":{"X-A":"a\u000bb"}`), "headers.X-A", Policy{}},
		{"header DEL", edit(`"name":"n"`, `"name":"n","headers":{"X-A":"a\u007f"}`), "headers.X-A", Policy{}},
		{"header ESC", edit(`"name":"n"`, `"name":"n","headers":{"X-A":"\u001b[2J"}`), "headers.X-A", Policy{}},
		{"port 65536", edit(`hooks.example.com`, `hooks.example.com:65536`), "url", Policy{}},
		{"port 99999999", edit(`hooks.example.com`, `hooks.example.com:99999999`), "url", Policy{}},
		{"port 00", edit(`hooks.example.com`, `hooks.example.com:00`), "url", Policy{}},
		{"port 0", edit(`hooks.example.com`, `hooks.example.com:0`), "url", Policy{}},
		{"port with a leading zero", edit(`hooks.example.com`, `hooks.example.com:0443`), "url", Policy{}},
		{"space in the query", edit(`/feedback`, `/a?x=1 HTTP/1.0`), "url", Policy{}},
		{"control character in the query", edit(`/feedback`, `/a?x=\u0001`), "url", Policy{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Decode(context.Background(), []byte(tt.body), tt.policy)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("want *FieldError, got %v", err)
			}
			if fe.Field != tt.field {
				t.Fatalf("field = %q (%v), want %q", fe.Field, fe, tt.field)
			}
		})
	}
}

func TestDecodeDevPolicy(t *testing.T) {
	body := strings.Replace(good, "https://hooks.example.com", "http://127.0.0.1:9000", 1)
	if _, _, err := Decode(context.Background(), []byte(body), Policy{AllowHTTP: true, Guard: &netguard.Guard{AllowPrivate: true}}); err != nil {
		t.Fatal(err)
	}
}

func TestSkipReason(t *testing.T) {
	c := &Config{Channels: []string{ChannelEmail}, Campaigns: []string{"c1"}}
	tests := []struct{ channel, campaign, want string }{
		{"email", "c1", ""},
		{"sms", "c1", SkipChannel},
		{"email", "c2", SkipCampaign},
	}
	for _, tt := range tests {
		if got := c.SkipReason(tt.channel, tt.campaign); got != tt.want {
			t.Errorf("SkipReason(%s,%s) = %q, want %q", tt.channel, tt.campaign, got, tt.want)
		}
	}
	c.Campaigns = []string{AllCampaigns}
	if got := c.SkipReason("email", "anything"); got != "" {
		t.Errorf("wildcard campaign skipped: %q", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"imsOrg":"o","sandbox":{"id":"s"},"name":"n","channels":["sms"],"url":"https://[::1]:0/x","headers":{"a":"b"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, _, err := Decode(context.Background(), body, Policy{})
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not *FieldError: %v", err)
			}
			return
		}
		if c.Org == "" || c.Sandbox.ID == "" || c.URL == "" || len(c.Channels) == 0 {
			t.Fatalf("accepted incomplete config: %+v", c)
		}
	})
}

// Endpoint URLs that point inside our network are refused when the config
// is saved, in every notation (the dial-time check is tested in
// pkg/netguard and pkg/deliver).
func TestDecodeRefusesNonPublicHosts(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "localhost", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1",
		"[::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "169.254.169.254", "[fd00:ec2::254]", "100.100.100.200",
		"10.0.0.1", "[fe80::1%25eth0]", "[64:ff9b::a9fe:a9fe]", "metadata.localhost"} {
		body := strings.Replace(good, "hooks.example.com", host, 1)
		_, _, err := Decode(context.Background(), []byte(body), Policy{})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "url" || !strings.Contains(fe.Message, "address") {
			t.Errorf("%s: %v", host, err)
		}
	}
	allow := &netguard.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if _, _, err := Decode(context.Background(), []byte(strings.Replace(good, "hooks.example.com", "10.0.0.1", 1)), Policy{Guard: allow}); err != nil {
		t.Errorf("allow-listed range refused: %v", err)
	}
}

// Read-only fields are ignored whatever they hold, so a config read with
// GET can be PUT back as it is.
func TestDecodeIgnoresReadOnlyFields(t *testing.T) {
	body := strings.Replace(good, `"name":"n"`, `"name":"n","createdAt":"not a date","updatedAt":5,"disabledReason":"x"`, 1)
	c, _, err := Decode(context.Background(), []byte(body), Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.CreatedAt.IsZero() || !c.UpdatedAt.IsZero() || c.DisabledReason != "" || c.Name != "n" {
		t.Fatalf("read-only fields taken: %+v", c)
	}
}

func TestValidateCampaigns(t *testing.T) {
	ids := make([]string, MaxCampaigns+1)
	for i := range ids {
		ids[i] = "c" + strconv.Itoa(i)
	}
	if err := ValidateCampaigns(ids[:MaxCampaigns]); err != nil {
		t.Errorf("%d campaigns: %v", MaxCampaigns, err)
	}
	var fe *FieldError
	if err := ValidateCampaigns(ids); !errors.As(err, &fe) || fe.Field != "campaigns" {
		t.Errorf("%d campaigns: %v, want a campaigns field error", len(ids), err)
	}
	// The schema says the same.
	body := strings.Replace(good, `"name":"n"`, `"name":"n","campaigns":["`+strings.Join(ids, `","`)+`"]`, 1)
	if _, _, err := Decode(context.Background(), []byte(body), Policy{}); !errors.As(err, &fe) || fe.Field != "campaigns" {
		t.Errorf("Decode of %d campaigns: %v", len(ids), err)
	}
}
