package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/feedbackd/feedbackd/pkg/kafkaconn"
)

// settings are feedbackctl's own: flags, then FEEDBACKCTL_* variables,
// then the file given with --config.
type settings struct {
	v *viper.Viper

	kconn   *kafkaconn.Config // from the kafka-* settings, validated before a command runs
	kopts   []kgo.Opt
	checked error // the first connection check, made once
	once    sync.Once
}

func (s *settings) brokers() []string { return s.v.GetStringSlice("brokers") }
func (s *settings) output() string    { return s.v.GetString("output") }
func (s *settings) json() bool        { return s.output() == "json" }

func (s *settings) api() *apiClient {
	return &apiClient{base: strings.TrimRight(s.v.GetString("admin-url"), "/"), token: s.v.GetString("token")}
}

// kafka returns the options of a Kafka client after checking, once, that a
// broker answers and takes the credentials: a wrong password or
// certificate is one clear line at once, not retries until a timeout.
func (s *settings) kafka(ctx context.Context) ([]kgo.Opt, error) {
	s.once.Do(func() {
		for _, w := range s.kconn.Warnings(kafkaKey) {
			fmt.Fprintln(os.Stderr, "feedbackctl: warning: kafka:", w)
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		s.checked = s.kconn.Check(cctx, s.kafkaOpts()...)
	})
	return s.kafkaOpts(), s.checked
}

func (s *settings) kafkaOpts() []kgo.Opt {
	return append(slices.Clone(s.kopts), kgo.ClientID("feedbackctl"))
}

// kafkaFlags are the connection settings, named like feedbackd's kafka.tls.*
// and kafka.sasl.* keys with "-" for "." and "_".
var kafkaFlags = []struct{ name, usage string }{
	{"kafka-tls-enabled", "connect to Kafka over TLS (kafka.tls.enabled)"},
	{"kafka-tls-ca-file", "PEM CA bundle of the broker certificates; default: system roots"},
	{"kafka-tls-cert-file", "client certificate for mTLS (with --kafka-tls-key-file)"},
	{"kafka-tls-key-file", "client key for mTLS"},
	{"kafka-tls-server-name", "name checked in the broker certificates"},
	{"kafka-tls-insecure-skip-verify", "accept any broker certificate (tests only)"},
	{"kafka-sasl-mechanism", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM"},
	{"kafka-sasl-username", "SASL user"},
	{"kafka-sasl-password-file", "file holding the SASL password (or set FEEDBACKCTL_KAFKA_SASL_PASSWORD)"},
	{"kafka-sasl-token-file", "file holding the OAUTHBEARER token"},
}

// kafkaKey names a kafkaconn field as a feedbackctl flag; the password,
// which has no flag (it would show in the process list), by its variable.
func kafkaKey(field string) string {
	if field == "sasl.password" {
		return "FEEDBACKCTL_KAFKA_SASL_PASSWORD"
	}
	return "--kafka-" + strings.NewReplacer(".", "-", "_", "-").Replace(field)
}

func (s *settings) loadKafka() error {
	g := func(field string) string {
		return s.v.GetString("kafka-" + strings.NewReplacer(".", "-", "_", "-").Replace(field))
	}
	b := func(field string) bool { return s.v.GetBool(strings.TrimPrefix(kafkaKey(field), "--")) }
	s.kconn = &kafkaconn.Config{
		Brokers: s.brokers(),
		TLS: kafkaconn.TLS{Enabled: b("tls.enabled"), CAFile: g("tls.ca_file"), CertFile: g("tls.cert_file"), KeyFile: g("tls.key_file"),
			ServerName: g("tls.server_name"), InsecureSkipVerify: b("tls.insecure_skip_verify")},
		SASL: kafkaconn.SASL{Mechanism: g("sasl.mechanism"), Username: g("sasl.username"), Password: g("sasl.password"),
			PasswordFile: g("sasl.password_file"), TokenFile: g("sasl.token_file")},
	}
	if err := s.kconn.Validate(kafkaKey); err != nil {
		return err
	}
	var err error
	s.kopts, err = s.kconn.Opts()
	return err
}

func newRoot() *cobra.Command {
	s := &settings{v: viper.New()}
	var configFile string
	root := &cobra.Command{
		Use:   "feedbackctl",
		Short: "Operate feedbackd: webhook configs, delivery log and health, recovery, dead letters, events",
		Long: `feedbackctl is the operator CLI of feedbackd: webhook configs and campaigns
through the admin API; a config's delivery log and endpoint health
(webhooks attempts, webhooks health, messages show); recovery of a time
window from the input topics (webhooks recover, webhooks recoveries); the
dead-letter topic (list, show, stats, replay); and producing and validating
events.

Settings come from flags, then FEEDBACKCTL_<NAME> environment variables
(FEEDBACKCTL_BROKERS=k1:9092,k2:9092, FEEDBACKCTL_ADMIN_URL,
FEEDBACKCTL_TOKEN), then the YAML file given with --config (keys brokers,
admin-url, token, group, output, kafka-*). Commands exit non-zero on failure.

Kafka with TLS and SASL: the --kafka-tls-* and --kafka-sasl-* flags mirror
feedbackd's kafka.tls.* and kafka.sasl.* keys, e.g. for SCRAM over TLS:
  FEEDBACKCTL_KAFKA_TLS_ENABLED=true FEEDBACKCTL_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 \
  FEEDBACKCTL_KAFKA_SASL_USERNAME=feedbackd FEEDBACKCTL_KAFKA_SASL_PASSWORD=... \
  feedbackctl dlq list
The password has no flag (it would show in ps): FEEDBACKCTL_KAFKA_SASL_PASSWORD,
kafka-sasl-password in the --config file, or --kafka-sasl-password-file.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			s.v.SetEnvPrefix("FEEDBACKCTL")
			s.v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
			s.v.AutomaticEnv()
			if configFile != "" {
				s.v.SetConfigFile(configFile)
				if err := s.v.ReadInConfig(); err != nil {
					return fmt.Errorf("config file %s: %w", configFile, err)
				}
			}
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				s.v.Set("output", "json")
			}
			if err := s.loadKafka(); err != nil {
				return err
			}
			if o := s.output(); o != "table" && o != "json" {
				return fmt.Errorf("--output must be table or json, not %q", o)
			}
			if !s.json() { // JSON escapes its own strings; text goes to a terminal
				root := cmd.Root()
				root.SetOut(&terminalWriter{w: root.OutOrStdout()})
				root.SetErr(&terminalWriter{w: root.ErrOrStderr()})
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&configFile, "config", "", "feedbackctl settings file (YAML keys: brokers, admin-url, token, group, output)")
	pf.StringSlice("brokers", []string{"127.0.0.1:9092"}, "Kafka seed brokers")
	pf.StringP("output", "o", "table", "output format: table or json")
	pf.Bool("json", false, "the same as -o json")
	pf.String("admin-url", "http://127.0.0.1:8080", "feedbackd admin API")
	pf.String("token", "", "admin API bearer token (better: FEEDBACKCTL_TOKEN)")
	pf.String("group", "feedbackd", "feedbackd's consumer group (kafka.group); replay jobs use <group>-replay-<id>")
	for _, f := range kafkaFlags {
		if strings.HasSuffix(f.name, "-enabled") || strings.HasSuffix(f.name, "-verify") {
			pf.Bool(f.name, false, f.usage)
		} else {
			pf.String(f.name, "", f.usage)
		}
	}
	for _, k := range []string{"brokers", "output", "admin-url", "token", "group"} {
		_ = s.v.BindPFlag(k, pf.Lookup(k))
	}
	for _, f := range kafkaFlags {
		_ = s.v.BindPFlag(f.name, pf.Lookup(f.name))
	}

	root.AddCommand(newWebhooks(s), newCampaigns(s), newDLQ(s), newProduce(s), newValidate(s), newReceive(s), newToken(s), newMessages(s))
	return root
}
