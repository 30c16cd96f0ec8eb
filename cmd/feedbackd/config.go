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
	if err := unknownVariables(v.AllKeys(), os.Environ()); err != nil {
		return daemon.Config{}, nil, "", err
	}

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
		if _, ok := os.LookupEnv(envName(key)); ok {
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

// notConfig are FEEDBACKD_ variables that are not configuration keys.
var notConfig = map[string]bool{
	"FEEDBACKD_REQUIRE_TOOLS": true, // the tests: fail instead of skipping when a tool is missing
}

// unknownVariables refuses FEEDBACKD_ variables in environ that name no
// configuration key, as a misspelled key in the file is refused: a typo
// such as FEEDBACKD_RETRY_SCHEDUL must not be ignored silently.
func unknownVariables(keys, environ []string) error {
	known := make(map[string]string, len(keys))
	for _, k := range keys {
		known[envName(k)] = k
	}
	var errs []error
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "FEEDBACKD_") || notConfig[name] {
			continue
		}
		if _, ok := known[name]; ok {
			continue
		}
		msg := fmt.Sprintf("environment variable %s names no configuration key", name)
		if near := nearest(name, known); near != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", near)
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}

// envName is the variable that sets key: FEEDBACKD_ and the key upper-cased,
// dots as underscores.
func envName(key string) string {
	return "FEEDBACKD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// nearest returns the known variable closest to name (at most 3 edits), or "".
func nearest(name string, known map[string]string) string {
	best, bestD := "", 4
	for k := range known {
		if d := editDistance(name, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
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
