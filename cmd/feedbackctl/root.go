package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"github.com/twmb/franz-go/pkg/kgo"
)

// settings are feedbackctl's own: flags, then FEEDBACKCTL_* variables,
// then the file given with --config.
type settings struct {
	v *viper.Viper
}

func (s *settings) brokers() []string { return s.v.GetStringSlice("brokers") }
func (s *settings) output() string    { return s.v.GetString("output") }
func (s *settings) json() bool        { return s.output() == "json" }

func (s *settings) api() *apiClient {
	return &apiClient{base: strings.TrimRight(s.v.GetString("admin-url"), "/"), token: s.v.GetString("token")}
}

func (s *settings) kafkaOpts() []kgo.Opt {
	return []kgo.Opt{kgo.SeedBrokers(s.brokers()...), kgo.ClientID("feedbackctl")}
}

func newRoot() *cobra.Command {
	s := &settings{v: viper.New()}
	var configFile string
	root := &cobra.Command{
		Use:   "feedbackctl",
		Short: "Operate feedbackd: produce events, inspect dead letters, receive webhooks",
		Long: `feedbackctl is the operator CLI of feedbackd: webhook configs and campaigns
through the admin API, the dead-letter topic (list, show, stats, replay),
and producing and validating events.

Settings come from flags, then FEEDBACKCTL_<NAME> environment variables
(FEEDBACKCTL_BROKERS=k1:9092,k2:9092, FEEDBACKCTL_ADMIN_URL,
FEEDBACKCTL_TOKEN), then the YAML file given with --config (keys brokers,
admin-url, token, group, output). Commands exit non-zero on failure.`,
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
	pf.String("admin-url", "http://127.0.0.1:8080", "feedbackd admin API")
	pf.String("token", "", "admin API bearer token (better: FEEDBACKCTL_TOKEN)")
	pf.String("group", "feedbackd", "feedbackd's consumer group (kafka.group); replay jobs use <group>-replay-<id>")
	for _, k := range []string{"brokers", "output", "admin-url", "token", "group"} {
		_ = s.v.BindPFlag(k, pf.Lookup(k))
	}

	root.AddCommand(newWebhooks(s), newCampaigns(s), newDLQ(s), newProduce(s), newValidate(s), newReceive(s), newToken(s))
	return root
}
