package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/feedbackd/feedbackd/pkg/daemon"
)

// defaultConfigFile is read when --config is not given and it exists.
const defaultConfigFile = "config/feedbackd.yaml"

// flagKeys binds flags to configuration keys: flags win over the
// environment, which wins over the file, which wins over the defaults.
var flagKeys = map[string]string{
	"http-addr":     "http.addr",
	"kafka-brokers": "kafka.brokers",
	"redis-addr":    "redis.addr",
	"log-level":     "log.level",
	"log-format":    "log.format",
}

// loadConfig decodes the configuration and reports which keys were set
// explicitly (file, environment or flag), so embedded mode only changes
// what the user left alone. Without file, defaultConfigFile is read if
// useDefaultFile and it exists.
func loadConfig(flags *pflag.FlagSet, file string, useDefaultFile bool) (daemon.Config, func(key string) bool, string, error) {
	v := viper.New()
	setDefaults(v, "", reflect.ValueOf(daemon.Defaults()))
	v.SetEnvPrefix("FEEDBACKD")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	if file == "" && useDefaultFile {
		if _, err := os.Stat(defaultConfigFile); err == nil {
			file = defaultConfigFile
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return daemon.Config{}, nil, "", fmt.Errorf("config file %s does not exist", file)
			}
			return daemon.Config{}, nil, "", fmt.Errorf("config file %s: %w", file, err)
		}
	}
	for name, key := range flagKeys {
		if err := v.BindPFlag(key, flags.Lookup(name)); err != nil {
			return daemon.Config{}, nil, "", err
		}
	}

	var cfg daemon.Config
	hook := viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		stringToDurations,
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	))
	if err := v.UnmarshalExact(&cfg, hook); err != nil {
		return daemon.Config{}, nil, "", fmt.Errorf("configuration: %w", err)
	}
	// viper's IsSet is also true for defaults; we want "chosen by the user".
	isSet := func(key string) bool {
		if v.InConfig(key) {
			return true
		}
		if _, ok := os.LookupEnv("FEEDBACKD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))); ok {
			return true
		}
		for name, k := range flagKeys {
			if k == key && flags.Changed(name) {
				return true
			}
		}
		return false
	}
	return cfg, isSet, file, nil
}

// setDefaults registers every leaf of the defaults struct under its
// mapstructure key, so that environment variables are known for every key.
func setDefaults(v *viper.Viper, prefix string, val reflect.Value) {
	t := val.Type()
	for i := range t.NumField() {
		key := prefix + t.Field(i).Tag.Get("mapstructure")
		switch f := val.Field(i); {
		case f.Kind() == reflect.Struct:
			setDefaults(v, key+".", f)
		default:
			v.SetDefault(key, f.Interface())
		}
	}
}

// stringToDurations decodes "5s,30s,2m" (an environment variable) into a
// duration list; mapstructure's slice hook only produces []string.
func stringToDurations(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to != reflect.TypeFor[[]time.Duration]() {
		return data, nil
	}
	var out []time.Duration
	for _, part := range strings.Split(data.(string), ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		d, err := time.ParseDuration(part)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
