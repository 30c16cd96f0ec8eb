package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/webhook"
)

func newWebhooks(s *settings) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "webhooks",
		Aliases: []string{"webhook", "wh"},
		Short:   "Manage webhook configs through the admin API",
		Long: `webhooks manages the webhook configs (one per organisation + sandbox)
through feedbackd's admin API (--admin-url, with the token in
FEEDBACKCTL_TOKEN).`,
	}
	cmd.AddCommand(webhooksCreate(s), webhooksGet(s), webhooksList(s), webhooksEdit(s),
		webhooksDelete(s), webhooksRotate(s), webhooksRotateKey(s), webhooksTest(s),
		webhooksRecover(s), webhooksRecoveries(s), webhooksAttempts(s), webhooksHealth(s))
	return cmd
}

// configFlags are the fields a config can be written with from flags.
type configFlags struct {
	org, sandbox, sandboxName, name, url string
	channels, campaigns, headers         []string
	removeHeaders                        []string
	file                                 string
	enable, disable                      bool
}

func (f *configFlags) register(cmd *cobra.Command, create bool) {
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "the config as JSON (schemas/webhook-config.schema.json); - for stdin")
	if create {
		fl.StringVar(&f.org, "org", "", "organisation (imsOrg)")
		fl.StringVar(&f.sandbox, "sandbox", "", "sandbox id")
	}
	fl.StringVar(&f.sandboxName, "sandbox-name", "", "sandbox name")
	fl.StringVar(&f.name, "name", "", "webhook name")
	fl.StringVar(&f.url, "url", "", "endpoint URL (https://...)")
	fl.StringSliceVar(&f.channels, "channels", nil, "channels: email, sms or both")
	fl.StringSliceVar(&f.campaigns, "campaigns", nil, `enabled campaign ids, or "*" for all`)
	fl.StringArrayVar(&f.headers, "header", nil, "custom header NAME=VALUE (repeatable; edit adds or replaces it)")
	if !create {
		fl.StringArrayVar(&f.removeHeaders, "remove-header", nil, "drop a custom header (repeatable)")
		fl.BoolVar(&f.enable, "enable", false, "enable the config (after a 410 disabled it)")
		fl.BoolVar(&f.disable, "disable", false, "disable the config: its events are dead-lettered as endpoint_disabled")
	}
}

// apply sets the flags that were given on c.
func (f *configFlags) apply(cmd *cobra.Command, c *webhook.Config) error {
	fl := cmd.Flags()
	set := func(name string, fn func()) {
		if fl.Changed(name) {
			fn()
		}
	}
	set("org", func() { c.Org = f.org })
	set("sandbox", func() { c.Sandbox.ID = f.sandbox })
	set("sandbox-name", func() { c.Sandbox.Name = f.sandboxName })
	set("name", func() { c.Name = f.name })
	set("url", func() { c.URL = f.url })
	set("channels", func() { c.Channels = f.channels })
	set("campaigns", func() { c.Campaigns = f.campaigns })
	if fl.Changed("header") {
		if c.Headers == nil {
			c.Headers = map[string]string{}
		}
		for _, h := range f.headers {
			k, v, ok := strings.Cut(h, "=")
			if !ok {
				return fmt.Errorf("--header %q is not NAME=VALUE", h)
			}
			c.Headers[k] = v
		}
	}
	for _, name := range f.removeHeaders {
		for k := range c.Headers {
			if strings.EqualFold(k, name) {
				delete(c.Headers, k)
			}
		}
	}
	if f.enable && f.disable {
		return errors.New("--enable and --disable exclude each other")
	}
	set("enable", func() { c.Enabled = true })
	set("disable", func() { c.Enabled = false })
	return nil
}

// load reads the --file config into c.
func (f *configFlags) load(c *webhook.Config) error {
	if f.file == "" {
		return nil
	}
	var r io.Reader = os.Stdin
	if f.file != "-" {
		file, err := os.Open(f.file)
		if err != nil {
			return err
		}
		defer file.Close()
		r = file
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("%s: %w", f.file, err)
	}
	return nil
}

// writable is the config as the API takes it (read-only fields left out).
func writable(c *webhook.Config) map[string]any {
	out := map[string]any{
		"imsOrg": c.Org, "sandbox": c.Sandbox, "name": c.Name, "channels": c.Channels,
		"url": c.URL, "auth": c.Auth, "enabled": c.Enabled,
	}
	if c.Auth.Type == "" {
		out["auth"] = webhook.Auth{Type: webhook.AuthNone}
	}
	if len(c.Headers) > 0 {
		out["headers"] = c.Headers
	}
	if c.Campaigns != nil {
		out["campaigns"] = c.Campaigns
	}
	return out
}

func webhookPath(org, sandbox string) string {
	return "/v1/webhooks/" + url.PathEscape(org) + "/" + url.PathEscape(sandbox)
}

func webhooksCreate(s *settings) *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a webhook config; prints its signing secret, shown this once",
		Example: `  feedbackctl webhooks create -f config/examples/webhook.json
  feedbackctl webhooks create --org myImsOrg --sandbox prod-1 --name "Feedback" \
      --channels email,sms --url https://hooks.example.com/feedback --header X-Team=messaging`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := &webhook.Config{Enabled: true}
			if err := f.load(c); err != nil {
				return err
			}
			if err := f.apply(cmd, c); err != nil {
				return err
			}
			var out struct {
				webhook.Config
				SigningSecret string `json:"signingSecret"`
			}
			if err := s.api().do(cmd.Context(), "POST", "/v1/webhooks", writable(c), &out); err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printConfig(cmd.OutOrStdout(), &out.Config)
			fmt.Fprintf(cmd.OutOrStdout(), "\nsigning secret (shown only now; give it to the receiver):\n  %s\n", out.SigningSecret)
			return nil
		},
	}
	f.register(cmd, true)
	return cmd
}

func webhooksGet(s *settings) *cobra.Command {
	return &cobra.Command{
		Use:     "get ORG SANDBOX",
		Short:   "Show a webhook config",
		Example: "  feedbackctl webhooks get myImsOrg my-sandbox -o json",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var c webhook.Config
			if err := s.api().do(cmd.Context(), "GET", webhookPath(args[0], args[1]), nil, &c); err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), c)
			}
			printConfig(cmd.OutOrStdout(), &c)
			return nil
		},
	}
}

func webhooksList(s *settings) *cobra.Command {
	var org string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List webhook configs",
		Example: "  feedbackctl webhooks list\n  feedbackctl webhooks list --org myImsOrg -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Webhooks []webhook.Config `json:"webhooks"`
			}
			path := "/v1/webhooks"
			if org != "" {
				path += "?imsOrg=" + url.QueryEscape(org)
			}
			if err := s.api().do(cmd.Context(), "GET", path, nil, &out); err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), out.Webhooks)
			}
			t := newTable(cmd.OutOrStdout(), 0)
			t.row("ORG", "SANDBOX", "NAME", "CHANNELS", "ENABLED", "CAMPAIGNS", "URL")
			for _, c := range out.Webhooks {
				t.row(c.Org, c.Sandbox.ID, c.Name, strings.Join(c.Channels, ","), c.Enabled, strings.Join(c.Campaigns, ","), c.URL)
			}
			t.flush()
			fmt.Fprintf(cmd.OutOrStdout(), "%d webhook configs\n", len(out.Webhooks))
			return nil
		},
	}
	cmd.Flags().StringVar(&org, "org", "", "only this organisation's configs")
	return cmd
}

func webhooksEdit(s *settings) *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "edit ORG SANDBOX",
		Short: "Change a webhook config: replace it with --file, or change the fields given as flags",
		Long: `edit reads the config, applies --file (a whole new config) or the flags
given, and writes it back (PUT). The signing secret does not change. The
change applies to the next event.`,
		Example: `  feedbackctl webhooks edit myImsOrg my-sandbox --url https://new.example.com/hook
  feedbackctl webhooks edit myImsOrg my-sandbox --enable     # after a 410 disabled it
  feedbackctl webhooks edit myImsOrg my-sandbox --header X-Env=prod --remove-header X-Old
  feedbackctl webhooks edit myImsOrg my-sandbox -f webhook.json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, path := s.api(), webhookPath(args[0], args[1])
			var c webhook.Config
			if err := api.do(cmd.Context(), "GET", path, nil, &c); err != nil {
				return err
			}
			if f.file != "" { // a whole new config; enabled stays as it is unless the file says
				c = webhook.Config{Enabled: c.Enabled}
				if err := f.load(&c); err != nil {
					return err
				}
			}
			if err := f.apply(cmd, &c); err != nil {
				return err
			}
			var out webhook.Config
			if err := api.do(cmd.Context(), "PUT", path, writable(&c), &out); err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printConfig(cmd.OutOrStdout(), &out)
			return nil
		},
	}
	f.register(cmd, false)
	return cmd
}

func webhooksDelete(s *settings) *cobra.Command {
	return &cobra.Command{
		Use:     "delete ORG SANDBOX",
		Short:   "Delete a webhook config; its later events are skipped as no_config",
		Example: "  feedbackctl webhooks delete myImsOrg my-sandbox",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := s.api().do(cmd.Context(), "DELETE", webhookPath(args[0], args[1]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s/%s\n", args[0], args[1])
			return nil
		},
	}
}

func webhooksRotate(s *settings) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-secret ORG SANDBOX",
		Short: "Issue a new signing secret; the old one keeps signing for the grace period",
		Long: `rotate-secret issues a new whsec_ signing secret and prints it (only now).
Until the grace period ends (secrets.rotation_grace, 24h by default), every
delivery carries two signatures (space-separated webhook-signature), one per
secret, so the receiver can switch to the new secret at its pace.`,
		Example: "  feedbackctl webhooks rotate-secret myImsOrg my-sandbox",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				SigningSecret      string    `json:"signingSecret"`
				PreviousValidUntil time.Time `json:"previousValidUntil"`
			}
			if err := s.api().do(cmd.Context(), "POST", webhookPath(args[0], args[1])+"/rotate-secret", nil, &out); err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new signing secret (shown only now):\n  %s\nthe previous one keeps signing until %s\n",
				out.SigningSecret, out.PreviousValidUntil.Format(time.RFC3339))
			return nil
		},
	}
}

func webhooksRotateKey(s *settings) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-key ORG SANDBOX",
		Short: "Give a jwt config a new signing key; the old kid stays in the JWKS for the grace period",
		Long: `rotate-key gives a config with auth.type jwt a new key of the same
algorithm. Tokens are signed with it at once. For RS256, ES256 and EdDSA the
old public key stays in /.well-known/jwks.json until the grace period ends;
for HS256 the new shared secret is printed (only now).`,
		Example: "  feedbackctl webhooks rotate-key myImsOrg my-sandbox",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				webhook.Config
				KeyID     string `json:"keyId"`
				JWTSecret string `json:"jwtSecret"`
			}
			if err := s.api().do(cmd.Context(), "POST", webhookPath(args[0], args[1])+"/rotate-key", nil, &out); err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new key id: %s\n", out.KeyID)
			if out.JWTSecret != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "new HS256 secret (shown only now; give it to the receiver):\n  %s\n", out.JWTSecret)
			}
			return nil
		},
	}
}

func webhooksTest(s *settings) *cobra.Command {
	return &cobra.Command{
		Use:   "test ORG SANDBOX",
		Short: "Send a synthetic event to the endpoint now and print the outcome",
		Long: `test makes feedbackd send a synthetic "sent" event, signed, to the config's
endpoint, and prints the HTTP status, the latency and the classified error.
It exits 1 unless the endpoint answered 2xx.`,
		Example: "  feedbackctl webhooks test myImsOrg my-sandbox",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				WebhookID  string `json:"webhookId"`
				Outcome    string `json:"outcome"`
				Status     int    `json:"status"`
				Error      string `json:"error"`
				DurationMs int64  `json:"durationMs"`
				Note       string `json:"note"`
			}
			if err := s.api().do(cmd.Context(), "POST", webhookPath(args[0], args[1])+"/test", nil, &out); err != nil {
				return err
			}
			if s.json() {
				if err := printJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			} else {
				status := "-"
				if out.Status != 0 {
					status = fmt.Sprint(out.Status)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "outcome %s, HTTP status %s, %d ms, error %s (webhook-id %s)\n",
					out.Outcome, status, out.DurationMs, orDash(out.Error), out.WebhookID)
				if out.Note != "" {
					fmt.Fprintln(cmd.OutOrStdout(), "note:", out.Note)
				}
			}
			if out.Outcome != "success" {
				return fmt.Errorf("the endpoint did not accept the test event (%s)", orDash(out.Error))
			}
			return nil
		},
	}
}

func printConfig(w io.Writer, c *webhook.Config) {
	t := newTable(w, 0)
	headers := make([]string, 0, len(c.Headers))
	for k, v := range c.Headers {
		headers = append(headers, k+"="+v)
	}
	rows := [][2]string{
		{"org", c.Org}, {"sandbox", sandboxLabel(c.Sandbox)}, {"name", c.Name},
		{"channels", strings.Join(c.Channels, ", ")}, {"url", c.URL}, {"auth", c.Auth.Type},
		{"headers", strings.Join(headers, ", ")}, {"campaigns", strings.Join(c.Campaigns, ", ")},
		{"enabled", fmt.Sprint(c.Enabled)}, {"disabled reason", c.DisabledReason},
		{"created", c.CreatedAt.Format("2006-01-02 15:04:05Z07:00")}, {"updated", c.UpdatedAt.Format("2006-01-02 15:04:05Z07:00")},
	}
	for _, r := range rows {
		t.row(r[0]+":", orDash(r[1]))
	}
	t.flush()
}

func sandboxLabel(s webhook.Sandbox) string {
	if s.Name == "" {
		return s.ID
	}
	return s.ID + " (" + s.Name + ")"
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
