package kafkaconn_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/feedbackd/feedbackd/pkg/kafkaconn"
	"github.com/feedbackd/feedbackd/test/testenv"
)

const password = "s3cret-Pa55word-never-logged"

// TestCheckAgainstRealBrokers tries every wrong credential, certificate,
// mechanism and address against kfake brokers and asserts the one line
// each gives; none may hold the password.
func TestCheckAgainstRealBrokers(t *testing.T) {
	pki := testenv.NewPKI(t)
	broker := func(opts ...kfake.Opt) string {
		return testenv.StartKafka(t, opts...).Seeds[0]
	}
	scramTLS := broker(kfake.TLS(pki.ServerTLS(t, false)), kfake.EnableSASL(),
		kfake.Superuser(kafkaconn.ScramSHA512, "admin", "admin-pw"), kfake.User(kafkaconn.ScramSHA512, "feedbackd", password))
	plainSASL := broker(kfake.EnableSASL(), kfake.Superuser(kafkaconn.Plain, "feedbackd", password))
	mtls := broker(kfake.TLS(pki.ServerTLS(t, true)))
	wrongHost := broker(kfake.TLS(pki.WrongHostTLS(t)))
	plaintext := broker()

	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("a.b.c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsOn := kafkaconn.TLS{Enabled: true, CAFile: pki.CAFile}
	scram := func(user, pass string) kafkaconn.SASL {
		return kafkaconn.SASL{Mechanism: kafkaconn.ScramSHA512, Username: user, Password: pass}
	}

	for _, tc := range []struct {
		name string
		cfg  kafkaconn.Config
		want string // "" means success
	}{
		{"scram over tls", kafkaconn.Config{Brokers: []string{scramTLS}, TLS: tlsOn, SASL: scram("feedbackd", password)}, ""},
		{"scram password file", kafkaconn.Config{Brokers: []string{scramTLS}, TLS: tlsOn, SASL: kafkaconn.SASL{Mechanism: kafkaconn.ScramSHA512, Username: "feedbackd", PasswordFile: pwFile}}, ""},
		{"wrong password", kafkaconn.Config{Brokers: []string{scramTLS}, TLS: tlsOn, SASL: scram("feedbackd", "wrong-"+password)},
			"kafka: SASL authentication failed (SCRAM-SHA-512, user feedbackd)"},
		{"unknown user", kafkaconn.Config{Brokers: []string{scramTLS}, TLS: tlsOn, SASL: scram("nobody", password)},
			"kafka: SASL authentication failed (SCRAM-SHA-512, user nobody)"},
		{"wrong scram variant", kafkaconn.Config{Brokers: []string{scramTLS}, TLS: tlsOn, SASL: kafkaconn.SASL{Mechanism: kafkaconn.ScramSHA256, Username: "feedbackd", Password: password}},
			"kafka: SASL authentication failed (SCRAM-SHA-256, user feedbackd)"},
		{"mechanism the broker lacks", kafkaconn.Config{Brokers: []string{scramTLS}, TLS: tlsOn, SASL: kafkaconn.SASL{Mechanism: kafkaconn.OAuthBearer, TokenFile: tokenFile}},
			"kafka: SASL mechanism OAUTHBEARER is not enabled on the broker " + scramTLS},
		{"no sasl towards a sasl broker", kafkaconn.Config{Brokers: []string{scramTLS}, TLS: tlsOn},
			"kafka: the broker " + scramTLS + " closed the connection at once: does it expect TLS (kafka.tls.enabled) or SASL (kafka.sasl.mechanism)?"},
		{"unknown CA", kafkaconn.Config{Brokers: []string{scramTLS}, TLS: kafkaconn.TLS{Enabled: true, CAFile: pki.OtherCAFile}, SASL: scram("feedbackd", password)},
			"kafka: TLS: certificate signed by unknown authority (broker " + scramTLS + "; kafka.tls.ca_file)"},
		{"system roots", kafkaconn.Config{Brokers: []string{scramTLS}, TLS: kafkaconn.TLS{Enabled: true}, SASL: scram("feedbackd", password)},
			"kafka: TLS: certificate signed by unknown authority (broker " + scramTLS + "; kafka.tls.ca_file)"},
		{"wrong host name", kafkaconn.Config{Brokers: []string{wrongHost}, TLS: tlsOn},
			"kafka: TLS: certificate is not valid for 127.0.0.1 (broker " + wrongHost + "; kafka.tls.server_name)"},
		{"server name fixes it", kafkaconn.Config{Brokers: []string{wrongHost}, TLS: kafkaconn.TLS{Enabled: true, CAFile: pki.CAFile, ServerName: "other.example"}}, ""},
		{"tls towards plaintext", kafkaconn.Config{Brokers: []string{plaintext}, TLS: tlsOn},
			"kafka: no answer from the broker " + plaintext + " in time: is it a TLS listener (kafka.tls.enabled is true)?"},
		{"plaintext towards tls", kafkaconn.Config{Brokers: []string{scramTLS}, SASL: scram("feedbackd", password)},
			"kafka: the broker " + scramTLS + " closed the connection at once: does it expect TLS (kafka.tls.enabled) or SASL (kafka.sasl.mechanism)?"},
		{"mtls without client cert", kafkaconn.Config{Brokers: []string{mtls}, TLS: tlsOn},
			"kafka: TLS: the broker " + mtls + " refused the client certificate: certificate required (kafka.tls.cert_file)"},
		{"mtls with a stranger's certificate", kafkaconn.Config{Brokers: []string{mtls}, TLS: kafkaconn.TLS{Enabled: true, CAFile: pki.CAFile, CertFile: pki.StrangerCert, KeyFile: pki.StrangerKey}},
			// Go sends no certificate the broker's CAs did not sign.
			"kafka: TLS: the broker " + mtls + " refused the client certificate: certificate required (kafka.tls.cert_file)"},
		{"mtls", kafkaconn.Config{Brokers: []string{mtls}, TLS: kafkaconn.TLS{Enabled: true, CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}}, ""},
		{"plain", kafkaconn.Config{Brokers: []string{plainSASL}, SASL: kafkaconn.SASL{Mechanism: kafkaconn.Plain, Username: "feedbackd", Password: password}}, ""},
		{"plain wrong password", kafkaconn.Config{Brokers: []string{plainSASL}, SASL: kafkaconn.SASL{Mechanism: kafkaconn.Plain, Username: "feedbackd", Password: "nope"}},
			"kafka: SASL authentication failed (PLAIN, user feedbackd)"},
		{"sasl towards a broker without", kafkaconn.Config{Brokers: []string{plaintext}, SASL: kafkaconn.SASL{Mechanism: kafkaconn.Plain, Username: "feedbackd", Password: password}},
			"kafka: SASL authentication failed (PLAIN, user feedbackd)"}, // kfake takes the handshake, then drops the connection
		{"unknown host", kafkaconn.Config{Brokers: []string{"kafka.invalid:9092"}},
			"kafka: cannot resolve broker host kafka.invalid (no such host)"},
		{"unreachable", kafkaconn.Config{Brokers: []string{"127.0.0.1:1"}},
			"kafka: cannot connect to broker 127.0.0.1:1 (connect: connection refused)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(nil); err != nil {
				t.Fatalf("valid config refused: %v", err)
			}
			opts, err := tc.cfg.Opts()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err = tc.cfg.Check(ctx, opts...)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if strings.Contains(got, password) || strings.Contains(got, "\n") {
				t.Errorf("error holds the password or several lines: %q", got)
			}
		})
	}
}
