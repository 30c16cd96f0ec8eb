package receiver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/feedbackd/feedbackd/pkg/signature"
)

func TestReceiverVerifies(t *testing.T) {
	secret, _ := signature.NewSecret()
	other, _ := signature.NewSecret()
	rc := &Receiver{Answer: func(d Delivery) int {
		if d.Attempt == 1 {
			return 503
		}
		return 200
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	post := func(signWith string) int {
		s, _ := signature.NewSigner(signWith)
		body := []byte(`{"requestId":"r"}`)
		ts := time.Now().Unix()
		req, _ := http.NewRequest("POST", srv.URL, bytes.NewReader(body))
		req.Header.Set("webhook-id", "msg_1")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("webhook-signature", string(s.AppendSignature(nil, "msg_1", ts, body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(secret); got != 503 {
		t.Fatalf("before SetSecrets: %d", got)
	}
	if err := rc.SetSecrets(secret); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{401, 503, 200} {
		s := secret
		if i == 0 {
			s = other
		}
		if got := post(s); got != want {
			t.Fatalf("request %d: %d, want %d", i, got, want)
		}
	}
}
