package daemon

import (
	"strings"
	"testing"
)

func TestDeliveryProxy(t *testing.T) {
	for _, ok := range []string{"", "http://127.0.0.1:3128", "http://feedbackd:s3cret@proxy.internal:8080"} {
		c := valid()
		c.Delivery.Proxy = ok
		if err := c.Validate(); err != nil {
			t.Errorf("delivery.proxy %q: %v", ok, err)
		}
	}
	c := valid()
	c.Delivery.Proxy = "http://feedbackd:s3cret@proxy.internal:8080"
	if u := c.Delivery.ProxyURL(); u == nil || u.Host != "proxy.internal:8080" {
		t.Errorf("ProxyURL() = %v", u)
	}
	if u := valid().Delivery.ProxyURL(); u != nil {
		t.Errorf("ProxyURL() without a proxy = %v, want nil", u)
	}
	for _, bad := range []string{
		"https://feedbackd:s3cret@proxy.internal:3128",
		"socks5://feedbackd:s3cret@proxy.internal:1080",
		"http://feedbackd:s3cret@proxy.internal",
		"http://feedbackd:s3cret@proxy.internal:3128/path",
		"http://feedbackd:s3cret@proxy.internal:31 28",
		"feedbackd:s3cret@proxy.internal:3128",
	} {
		c := valid()
		c.Delivery.Proxy = bad
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), "delivery.proxy:") {
			t.Errorf("%q: Validate() = %v, want an error about delivery.proxy", bad, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: the error quotes the password: %v", bad, err)
		}
	}
}
