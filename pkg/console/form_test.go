package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

// An API error lands next to the input its field names, or at the top of
// the form when no input takes it.
func TestFieldErrorPlacement(t *testing.T) {
	for _, tc := range []struct {
		field, input string // input "": the top of the form
	}{
		{"url", "url"},
		{"sandbox.id", "sandbox.id"},
		{"channels.0", "channels"},
		{"headers.X-Foo", "headers"},
		{"auth.expiresIn", "auth.expiresIn"},
		{"campaigns", "campaigns"},
		{"auth.claims.sub", ""},
		{"", ""},
		{"urlish", ""},
	} {
		f := &form{Err: &apiError{Field: tc.field, Message: "bad"}}
		top := f.TopErr() != nil
		if top != (tc.input == "") {
			t.Errorf("%q: at the top %v", tc.field, top)
		}
		if tc.input != "" && f.ErrFor(tc.input) == "" {
			t.Errorf("%q: not next to %s", tc.field, tc.input)
		}
		for _, other := range formFields {
			if other != tc.input && f.ErrFor(other) != "" {
				t.Errorf("%q: also next to %s", tc.field, other)
			}
		}
	}
}

// FuzzParseForm: whatever a browser posts, parseForm neither panics nor
// makes a body that cannot be sent to the API.
func FuzzParseForm(f *testing.F) {
	f.Add("imsOrg=o&sandboxId=s&name=n&email=1&url=https%3A%2F%2Fx&authType=jwt&algorithm=HS256&headerName=X&headerValue=1&campaignsMode=list&campaigns=a%0Ab")
	f.Add("headerName=&headerName=X&headerValue=only&authType=oauth2&clientSecret=s")
	f.Add("%zz=&&=&campaigns=,,, ,")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r := &http.Request{PostForm: v}
		fm, body := parseForm(r)
		if _, err := json.Marshal(body); err != nil {
			t.Fatalf("%q: body %v", raw, err)
		}
		if fm.AuthType == "" || (fm.CampaignsAll && v.Get("campaignsMode") == "list") {
			t.Fatalf("%q: %+v", raw, fm)
		}
	})
}
