package kafkaconn

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; "" means valid
	}{
		{"nothing", Config{}, ""},
		{"scram", Config{SASL: SASL{Mechanism: ScramSHA512, Username: "u", Password: "p"}}, ""},
		{"unknown mechanism", Config{SASL: SASL{Mechanism: "SCRAM-SHA-1", Username: "u", Password: "p"}},
			`kafka.sasl.mechanism: "SCRAM-SHA-1" is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, AWS_MSK_IAM`},
		{"lower case", Config{SASL: SASL{Mechanism: "plain", Username: "u", Password: "p"}}, `kafka.sasl.mechanism: "plain" is not one of`},
		{"no user", Config{SASL: SASL{Mechanism: Plain, Password: "p"}}, "kafka.sasl.username: is required with PLAIN"},
		{"no password", Config{SASL: SASL{Mechanism: ScramSHA256, Username: "u"}}, "kafka.sasl.password: is required with SCRAM-SHA-256 (or kafka.sasl.password_file)"},
		{"both passwords", Config{SASL: SASL{Mechanism: Plain, Username: "u", Password: "p", PasswordFile: f}}, "kafka.sasl.password_file: and kafka.sasl.password are both set"},
		{"password file missing", Config{SASL: SASL{Mechanism: Plain, Username: "u", PasswordFile: missing}}, "kafka.sasl.password_file: cannot read " + missing},
		{"user without mechanism", Config{SASL: SASL{Username: "u"}}, "kafka.sasl.username: is set but kafka.sasl.mechanism is empty"},
		{"oauth without token", Config{SASL: SASL{Mechanism: OAuthBearer}}, "kafka.sasl.token_file: is required with OAUTHBEARER"},
		{"oauth with password", Config{SASL: SASL{Mechanism: OAuthBearer, TokenFile: f, Password: "p"}}, "kafka.sasl.password: is not used by OAUTHBEARER"},
		{"token with scram", Config{SASL: SASL{Mechanism: ScramSHA512, Username: "u", Password: "p", TokenFile: f}}, "kafka.sasl.token_file: is for OAUTHBEARER"},
		{"iam without tls", Config{SASL: SASL{Mechanism: AWSMSKIAM}}, "kafka.tls.enabled: must be true with AWS_MSK_IAM"},
		{"iam with user", Config{TLS: TLS{Enabled: true}, SASL: SASL{Mechanism: AWSMSKIAM, Username: "u"}}, "AWS_MSK_IAM takes its credentials from AWS_ACCESS_KEY_ID"},
		{"iam", Config{TLS: TLS{Enabled: true}, SASL: SASL{Mechanism: AWSMSKIAM}}, ""},
		{"cert without key", Config{TLS: TLS{Enabled: true, CertFile: f}}, "kafka.tls.key_file: is required with kafka.tls.cert_file (mTLS)"},
		{"key without cert", Config{TLS: TLS{Enabled: true, KeyFile: f}}, "kafka.tls.cert_file: is required with kafka.tls.key_file (mTLS)"},
		{"ca without tls", Config{TLS: TLS{CAFile: f}}, "kafka.tls.ca_file: is set but kafka.tls.enabled is false"},
		{"ca missing", Config{TLS: TLS{Enabled: true, CAFile: missing}}, "kafka.tls.ca_file: cannot read " + missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate(nil)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// Other programs name their own keys.
	err := (&Config{SASL: SASL{Mechanism: "X"}}).Validate(func(f string) string { return "--kafka-" + strings.NewReplacer(".", "-", "_", "-").Replace(f) })
	if err == nil || !strings.HasPrefix(err.Error(), `--kafka-sasl-mechanism: "X"`) {
		t.Fatalf("got %v", err)
	}
}

func TestWarnings(t *testing.T) {
	c := Config{TLS: TLS{Enabled: true, InsecureSkipVerify: true}}
	if w := c.Warnings(nil); len(w) != 1 || !strings.Contains(w[0], "NOT verified") {
		t.Fatalf("got %q", w)
	}
	c = Config{SASL: SASL{Mechanism: Plain, Username: "u", Password: "p"}}
	if w := c.Warnings(nil); len(w) != 1 || !strings.Contains(w[0], "unencrypted") {
		t.Fatalf("got %q", w)
	}
}

// TestOAuthBearerTokenFileReread: each authentication reads the file, so a
// refreshed token is used by the next connection.
func TestOAuthBearerTokenFileReread(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	m := SASL{Mechanism: OAuthBearer, TokenFile: f}.mechanism()
	for _, tok := range []string{"first.token.x", "second.token.y"} {
		if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, first, err := m.Authenticate(context.Background(), "b:9092")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(first), "auth=Bearer "+tok+"\x01") {
			t.Fatalf("client first message %q does not carry %s", first, tok)
		}
	}
	os.Remove(f)
	if _, _, err := m.Authenticate(context.Background(), "b:9092"); err == nil || !strings.Contains(err.Error(), "kafka.sasl.token_file") {
		t.Fatalf("got %v", err)
	}
}

// TestAWSMSKIAM is a unit test only: there is no MSK here. It checks that
// the mechanism signs with the credentials of the standard AWS variables.
func TestAWSMSKIAM(t *testing.T) {
	m := SASL{Mechanism: AWSMSKIAM}.mechanism()
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if _, _, err := m.Authenticate(context.Background(), "b-1.c.kafka.us-east-1.amazonaws.com:9098"); err == nil ||
		err.Error() != "AWS_MSK_IAM: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set" {
		t.Fatalf("got %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_SESSION_TOKEN", "session-tok")
	_, first, err := m.Authenticate(context.Background(), "b-1.c.kafka.us-east-1.amazonaws.com:9098")
	if err != nil {
		t.Fatal(err)
	}
	var msg map[string]string
	if err := json.Unmarshal(first, &msg); err != nil {
		t.Fatalf("%s: %v", first, err)
	}
	if msg["action"] != "kafka-cluster:Connect" || !strings.HasPrefix(msg["x-amz-credential"], "AKIDEXAMPLE/") ||
		!strings.Contains(msg["x-amz-credential"], "/us-east-1/kafka-cluster/") || msg["x-amz-security-token"] != "session-tok" || msg["x-amz-signature"] == "" {
		t.Fatalf("unexpected MSK IAM payload %v", msg)
	}
	if strings.Contains(string(first), "wJalrXUtnFEMI") {
		t.Fatal("the secret key is in the payload")
	}
}

// TestPasswordFileReread: a rotated password file is used by the next
// connection, and an unreadable one names the key, not the password.
func TestPasswordFileReread(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pw")
	m := SASL{Mechanism: Plain, Username: "u", PasswordFile: f}.mechanism()
	for _, pw := range []string{"one", "two"} {
		os.WriteFile(f, []byte(pw+"\n"), 0o600)
		_, first, err := m.Authenticate(context.Background(), "b:9092")
		if err != nil {
			t.Fatal(err)
		}
		if string(first) != "\x00u\x00"+pw {
			t.Fatalf("got %q", first)
		}
	}
}

func TestSASLLogValueHidesPassword(t *testing.T) {
	v := SASL{Mechanism: Plain, Username: "u", Password: "hunter2-secret"}.LogValue()
	if strings.Contains(v.String(), "hunter2") {
		t.Fatalf("%s", v)
	}
}

// TestExplainErrorsBrokersAnswer covers answers kfake does not give: a
// broker that reports SASL_AUTHENTICATION_FAILED (Kafka since 1.1) or an
// authorization error, and a local TLS alert.
func TestExplainErrorsBrokersAnswer(t *testing.T) {
	c := &Config{Brokers: []string{"k1:9093"}, SASL: SASL{Mechanism: ScramSHA512, Username: "feedbackd", Password: "pw-secret"}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("wrapped: %w", kerr.SaslAuthenticationFailed), "kafka: SASL authentication failed (SCRAM-SHA-512, user feedbackd)"},
		{kerr.UnsupportedSaslMechanism, "kafka: SASL mechanism SCRAM-SHA-512 is not enabled on the broker k1:9093"},
		{fmt.Errorf("create topic feedback.dlq: %w", kerr.TopicAuthorizationFailed),
			`kafka: not authorized (TOPIC_AUTHORIZATION_FAILED, User:feedbackd): create topic feedback.dlq: an ACL is missing (README "Kafka ACLs")`},
		{tls.AlertError(42), "kafka: TLS: the broker k1:9093 refused the client certificate: bad certificate (kafka.tls.cert_file)"},
		{context.DeadlineExceeded, "kafka: no answer from the broker k1:9093 in time"},
	} {
		if got := c.Explain(tc.err).Error(); got != tc.want {
			t.Errorf("%v:\n got  %q\n want %q", tc.err, got, tc.want)
		}
	}
	if c.Explain(nil) != nil {
		t.Fatal("nil explained")
	}
}
