// Package kafkaconn turns the Kafka connection settings (seed brokers, TLS,
// SASL) into franz-go client options, for feedbackd, feedbackctl and
// feedbackbench alike, and explains connection failures in one line.
//
// Secrets (passwords, tokens, AWS keys) are read when a connection
// authenticates, never stored in errors or logs: a password or token file
// may be replaced while the process runs and the next connection uses the
// new one.
package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms.
const (
	Plain       = "PLAIN"
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
	OAuthBearer = "OAUTHBEARER"
	AWSMSKIAM   = "AWS_MSK_IAM"
)

// Mechanisms lists the SASL mechanisms feedbackd speaks.
var Mechanisms = []string{Plain, ScramSHA256, ScramSHA512, OAuthBearer, AWSMSKIAM}

// Config is how to reach the brokers. The mapstructure tags are the keys
// under kafka. in feedbackd's configuration.
type Config struct {
	Brokers []string
	TLS     TLS  `mapstructure:"tls"`
	SASL    SASL `mapstructure:"sasl"`

	auth *authState // set by Opts, read by Explain
}

// TLS is the transport security towards the brokers.
type TLS struct {
	Enabled bool `mapstructure:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the brokers'
	// certificates; empty: the system roots.
	CAFile string `mapstructure:"ca_file"`
	// CertFile and KeyFile are the client certificate and key (mTLS).
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string `mapstructure:"server_name"`
	// InsecureSkipVerify accepts any broker certificate: tests only.
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify"`
}

// SASL is the authentication towards the brokers.
type SASL struct {
	// Mechanism is one of Mechanisms; empty: no SASL.
	Mechanism string `mapstructure:"mechanism"`
	Username  string `mapstructure:"username"`
	// Password or PasswordFile (re-read on each connection), not both.
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
	// TokenFile holds the OAUTHBEARER token, re-read on each connection
	// so that a sidecar may refresh it.
	TokenFile string `mapstructure:"token_file"`
}

// LogValue keeps the password out of logs.
func (s SASL) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mechanism", s.Mechanism), slog.String("username", s.Username))
}

// KeyFunc names a configuration key from its field path ("sasl.mechanism").
type KeyFunc func(field string) string

// DaemonKeys names keys as feedbackd's configuration does: kafka.<field>.
func DaemonKeys(field string) string { return "kafka." + field }

// Validate checks the combination of settings; each error names the key at
// fault through key (nil: DaemonKeys). It never quotes a secret.
func (c *Config) Validate(key KeyFunc) error {
	if key == nil {
		key = DaemonKeys
	}
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf(key(field)+": "+format, a...))
	}
	file := func(field, path string) {
		if path == "" {
			return
		}
		if f, err := os.Open(path); err != nil {
			bad(field, "cannot read %s: %v", path, errors.Unwrap(err))
		} else {
			f.Close()
		}
	}

	t := c.TLS
	if !t.Enabled {
		for field, v := range map[string]bool{"tls.ca_file": t.CAFile != "", "tls.cert_file": t.CertFile != "", "tls.key_file": t.KeyFile != "", "tls.server_name": t.ServerName != "", "tls.insecure_skip_verify": t.InsecureSkipVerify} {
			if v {
				bad(field, "is set but %s is false", key("tls.enabled"))
			}
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		bad("tls.key_file", "is required with %s (mTLS)", key("tls.cert_file"))
	case t.KeyFile != "" && t.CertFile == "":
		bad("tls.cert_file", "is required with %s (mTLS)", key("tls.key_file"))
	}
	file("tls.ca_file", t.CAFile)
	file("tls.cert_file", t.CertFile)
	file("tls.key_file", t.KeyFile)

	s := c.SASL
	switch s.Mechanism {
	case "":
		for field, v := range map[string]bool{"sasl.username": s.Username != "", "sasl.password": s.Password != "", "sasl.password_file": s.PasswordFile != "", "sasl.token_file": s.TokenFile != ""} {
			if v {
				bad(field, "is set but %s is empty", key("sasl.mechanism"))
			}
		}
	case Plain, ScramSHA256, ScramSHA512:
		if s.Username == "" {
			bad("sasl.username", "is required with %s", s.Mechanism)
		}
		switch {
		case s.Password != "" && s.PasswordFile != "":
			bad("sasl.password_file", "and %s are both set: choose one", key("sasl.password"))
		case s.Password == "" && s.PasswordFile == "":
			bad("sasl.password", "is required with %s (or %s)", s.Mechanism, key("sasl.password_file"))
		}
		if s.TokenFile != "" {
			bad("sasl.token_file", "is for OAUTHBEARER, not %s", s.Mechanism)
		}
		file("sasl.password_file", s.PasswordFile)
	case OAuthBearer:
		if s.TokenFile == "" {
			bad("sasl.token_file", "is required with OAUTHBEARER")
		}
		if s.Password != "" || s.PasswordFile != "" {
			bad("sasl.password", "is not used by OAUTHBEARER (the token is read from %s)", key("sasl.token_file"))
		}
		file("sasl.token_file", s.TokenFile)
	case AWSMSKIAM:
		if s.Username != "" || s.Password != "" || s.PasswordFile != "" || s.TokenFile != "" {
			bad("sasl.mechanism", "AWS_MSK_IAM takes its credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, not from %s", key("sasl.username/password/token_file"))
		}
		if !t.Enabled {
			bad("tls.enabled", "must be true with AWS_MSK_IAM (MSK's IAM listener is TLS only)")
		}
	default:
		bad("sasl.mechanism", "%q is not one of %s", s.Mechanism, strings.Join(Mechanisms, ", "))
	}
	return errors.Join(errs...)
}

// Warnings are the risky but allowed settings, to log once at start-up.
func (c *Config) Warnings(key KeyFunc) []string {
	if key == nil {
		key = DaemonKeys
	}
	var w []string
	if c.TLS.InsecureSkipVerify {
		w = append(w, key("tls.insecure_skip_verify")+" is true: broker certificates are NOT verified, anyone on the path can read and change the traffic (tests only)")
	}
	if c.SASL.Mechanism != "" && !c.TLS.Enabled {
		w = append(w, key("sasl.mechanism")+" "+c.SASL.Mechanism+" without "+key("tls.enabled")+": credentials and records cross the network unencrypted")
	}
	return w
}

// Opts returns the seed brokers, TLS and SASL options of a client. Call it
// on a validated Config; it reads the TLS files now and the SASL secrets on
// each connection.
func (c *Config) Opts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.TLS.Enabled {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if m := c.SASL.mechanism(); m != nil {
		if c.auth == nil {
			c.auth = new(authState)
		}
		opts = append(opts, kgo.SASL(tracked{m, c.auth}))
	}
	return opts, nil
}

func (t TLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file: no PEM certificate in %s", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.cert_file, key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// mechanism builds the SASL mechanism; its callbacks read secrets at each
// authentication.
func (s SASL) mechanism() sasl.Mechanism {
	password := func() (string, error) {
		if s.PasswordFile == "" {
			return s.Password, nil
		}
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("kafka.sasl.password_file: %w", errors.Unwrap(err))
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	switch s.Mechanism {
	case Plain:
		return plain.Plain(func(context.Context) (plain.Auth, error) {
			p, err := password()
			return plain.Auth{User: s.Username, Pass: p}, err
		})
	case ScramSHA256, ScramSHA512:
		fn := func(context.Context) (scram.Auth, error) {
			p, err := password()
			return scram.Auth{User: s.Username, Pass: p}, err
		}
		if s.Mechanism == ScramSHA256 {
			return scram.Sha256(fn)
		}
		return scram.Sha512(fn)
	case OAuthBearer:
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			b, err := os.ReadFile(s.TokenFile)
			if err != nil {
				return oauth.Auth{}, fmt.Errorf("kafka.sasl.token_file: %w", errors.Unwrap(err))
			}
			tok := strings.TrimSpace(string(b))
			if tok == "" {
				return oauth.Auth{}, fmt.Errorf("kafka.sasl.token_file: %s is empty", s.TokenFile)
			}
			return oauth.Auth{Token: tok}, nil
		})
	case AWSMSKIAM:
		return aws.ManagedStreamingIAM(func(context.Context) (aws.Auth, error) {
			return awsFromEnv()
		})
	}
	return nil
}

// authState tells Explain whether a broker that closed the connection did
// so in the middle of an authentication: brokers (kfake, and Kafka before
// KIP-152's error responses) drop the connection on bad credentials
// rather than answer SASL_AUTHENTICATION_FAILED.
type authState struct {
	started, done atomic.Int64 // UnixNano of the last start and the last success
}

func (a *authState) failing() bool { return a != nil && a.started.Load() > a.done.Load() }

// tracked is a mechanism that records when authentications start and
// succeed.
type tracked struct {
	sasl.Mechanism
	state *authState
}

func (t tracked) Authenticate(ctx context.Context, host string) (sasl.Session, []byte, error) {
	t.state.started.Store(time.Now().UnixNano())
	s, first, err := t.Mechanism.Authenticate(ctx, host)
	if err != nil {
		return nil, nil, err
	}
	return trackedSession{s, t.state}, first, nil
}

type trackedSession struct {
	sasl.Session
	state *authState
}

func (t trackedSession) Challenge(resp []byte) (bool, []byte, error) {
	done, out, err := t.Session.Challenge(resp)
	if done && err == nil {
		t.state.done.Store(time.Now().UnixNano())
	}
	return done, out, err
}

// awsFromEnv reads the standard AWS credential variables.
func awsFromEnv() (aws.Auth, error) {
	var missing []string
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if os.Getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return aws.Auth{}, fmt.Errorf("AWS_MSK_IAM: %s not set", strings.Join(missing, " and "))
	}
	return aws.Auth{AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"), SessionToken: os.Getenv("AWS_SESSION_TOKEN"), UserAgent: "feedbackd"}, nil
}
