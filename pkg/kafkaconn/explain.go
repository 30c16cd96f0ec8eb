package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Error is a Kafka failure explained in one line naming the dependency and
// the cause, as logged at start-up and shown by /readyz. It never holds a
// secret.
type Error struct {
	// Msg is the line: "kafka: SASL authentication failed (SCRAM-SHA-512, user feedbackd)".
	Msg string
	// Permanent is true when trying again cannot help without a change of
	// configuration, credentials, certificates or ACLs.
	Permanent bool
	err       error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.err }

// Explain turns an error of a client built from c into an *Error; nil stays
// nil and an *Error is returned as it is.
func (c *Config) Explain(err error) error {
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	msg, permanent := c.classify(err)
	return &Error{Msg: "kafka: " + msg, Permanent: permanent, err: err}
}

func (c *Config) brokers() string {
	if len(c.Brokers) == 1 {
		return "broker " + c.Brokers[0]
	}
	return "brokers " + strings.Join(c.Brokers, ",")
}

func (c *Config) classify(err error) (string, bool) {
	s := c.SASL
	who := s.Mechanism
	if s.Username != "" {
		who += ", user " + s.Username
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		header    tls.RecordHeaderError
		alert     tls.AlertError
		opErr     *net.OpError
		dnsErr    *net.DNSError
		firstEOF  *kgo.ErrFirstReadEOF
		kafkaErr  *kerr.Error
	)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), c.auth.failing() && closed(err):
		return fmt.Sprintf("SASL authentication failed (%s)", who), true
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Sprintf("SASL mechanism %s is not enabled on the %s", s.Mechanism, c.brokers()), true
	case errors.Is(err, kerr.IllegalSaslState):
		return fmt.Sprintf("SASL handshake refused (%s) by the %s", who, c.brokers()), true
	case errors.As(err, &unknownCA):
		return fmt.Sprintf("TLS: certificate signed by unknown authority (%s; kafka.tls.ca_file)", c.brokers()), true
	case errors.As(err, &hostname):
		return fmt.Sprintf("TLS: certificate is not valid for %s (%s; kafka.tls.server_name)", hostname.Host, c.brokers()), true
	case errors.As(err, &invalid):
		return fmt.Sprintf("TLS: broker certificate rejected: %v (%s)", invalid, c.brokers()), true
	case errors.As(err, &header):
		return fmt.Sprintf("TLS: the %s does not speak TLS (kafka.tls.enabled is true)", c.brokers()), true
	case errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls: "):
		cause := err.Error()
		if i := strings.Index(cause, "tls: "); i >= 0 {
			cause = cause[i+len("tls: "):]
		}
		if strings.Contains(cause, "certificate required") || strings.Contains(cause, "bad certificate") || strings.Contains(cause, "unknown certificate") {
			return fmt.Sprintf("TLS: the %s refused the client certificate: %s (kafka.tls.cert_file)", c.brokers(), cause), true
		}
		return fmt.Sprintf("TLS: the %s ended the handshake: %s", c.brokers(), cause), true
	case errors.As(err, &firstEOF):
		hint := "does it expect TLS (kafka.tls.enabled) or SASL (kafka.sasl.mechanism)?"
		if c.TLS.Enabled && c.SASL.Mechanism != "" {
			hint = "check kafka.tls and kafka.sasl against the listener"
		}
		return fmt.Sprintf("the %s closed the connection at once: %s", c.brokers(), hint), false
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.GroupAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		errors.As(err, &kafkaErr)
		what, _, _ := strings.Cut(err.Error(), kafkaErr.Error())
		what = strings.TrimSuffix(strings.TrimSpace(what), ":")
		if what != "" {
			what = ": " + what
		}
		return fmt.Sprintf("not authorized (%s, %s)%s: an ACL is missing (README \"Kafka ACLs\")", kafkaErr.Message, principal(s), what), true
	case strings.Contains(err.Error(), "kafka.sasl.") || strings.Contains(err.Error(), "AWS_MSK_IAM:"):
		return err.Error(), true // a credential file or variable we could not read
	case errors.As(err, &dnsErr):
		cause := dnsErr.Err
		if dnsErr.IsNotFound {
			cause = "no such host"
		}
		return fmt.Sprintf("cannot resolve broker host %s (%s)", dnsErr.Name, cause), false
	case errors.As(err, &opErr) && opErr.Op == "dial":
		addr := c.brokers()
		if opErr.Addr != nil {
			addr = "broker " + opErr.Addr.String()
		}
		return fmt.Sprintf("cannot connect to %s (%v)", addr, opErr.Err), false
	case s.Mechanism != "" && closed(err):
		return fmt.Sprintf("the %s closed the connection before SASL %s began: is SASL enabled on this listener?", c.brokers(), s.Mechanism), true
	case errors.Is(err, context.DeadlineExceeded) && c.TLS.Enabled:
		return fmt.Sprintf("no answer from the %s in time: is it a TLS listener (kafka.tls.enabled is true)?", c.brokers()), false
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer from the %s in time", c.brokers()), false
	}
	return fmt.Sprintf("%v (%s)", err, c.brokers()), false
}

// closed is whether err says the broker closed the connection.
func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

func principal(s SASL) string {
	switch {
	case s.Username != "":
		return "User:" + s.Username
	case s.Mechanism != "":
		return "the " + s.Mechanism + " principal"
	}
	return "the anonymous principal"
}

// Check connects to a broker with opts (built from c) and authenticates,
// returning nil or an *Error.
func (c *Config) Check(ctx context.Context, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return &Error{Msg: "kafka: " + err.Error(), Permanent: true, err: err}
	}
	defer cl.Close()
	return c.Explain(cl.Ping(ctx))
}
