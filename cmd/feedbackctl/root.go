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

func (s *settings) kafkaOpts() []kgo.Opt {
	return []kgo.Opt{kgo.SeedBrokers(s.brokers()...), kgo.ClientID("feedbackctl")}
}

func newRoot() *cobra.Command {
	s := &settings{v: viper.New()}
	var configFile string
	root := &cobra.Command{
		Use:   "feedbackctl",
		Short: "Operate feedbackd: produce events, inspect dead letters, receive webhooks",
		Long: `feedbackctl is the operator CLI of feedbackd.

Settings come from flags, then FEEDBACKCTL_<NAME> environment variables
(FEEDBACKCTL_BROKERS=k1:9092,k2:9092), then the file given with --config.`,
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
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&configFile, "config", "", "feedbackctl settings file (YAML: brokers, output)")
	pf.StringSlice("brokers", []string{"127.0.0.1:9092"}, "Kafka seed brokers")
	pf.StringP("output", "o", "table", "output format: table or json")
	_ = s.v.BindPFlag("brokers", pf.Lookup("brokers"))
	_ = s.v.BindPFlag("output", pf.Lookup("output"))

	root.AddCommand(newProduce(s), newDLQ(s), newReceive(s))
	return root
}
