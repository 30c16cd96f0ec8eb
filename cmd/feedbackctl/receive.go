package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/receiver"
)

func newReceive(_ *settings) *cobra.Command {
	var addr, path, secretFile string
	var secrets []string
	var answer int
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "receive",
		Short: "Run a webhook endpoint that verifies feedbackd's signatures and prints what arrives",
		Long: `receive listens for webhooks, checks each one's Standard Webhooks signature
against the signing secret you got when creating the webhook config, and
prints one line per delivery: verified ones are answered with --status,
others with 401. Pass the secret with --secret or FEEDBACKCTL_SECRET (the
environment keeps it out of your shell history and the process list).`,
		Example: `  FEEDBACKCTL_SECRET=whsec_... feedbackctl receive --addr 127.0.0.1:9000
  feedbackctl receive --secret whsec_... --status 503   # watch feedbackd retry
  feedbackctl receive --secret-file /shared/secret --wait 2m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(secrets) == 0 {
				if s := os.Getenv("FEEDBACKCTL_SECRET"); s != "" {
					secrets = []string{s}
				}
			}
			if secretFile != "" {
				s, err := readSecretFile(cmd.Context(), secretFile, wait, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				secrets = append(secrets, s)
			}
			if len(secrets) == 0 {
				return errors.New("a signing secret is required: --secret, --secret-file or FEEDBACKCTL_SECRET")
			}
			rc := &receiver.Receiver{
				Log:    slog.New(slog.NewTextHandler(cmd.OutOrStdout(), nil)),
				Answer: func(receiver.Delivery) int { return answer },
			}
			if err := rc.SetSecrets(secrets...); err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			mux := http.NewServeMux()
			mux.Handle("POST "+path, rc)
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			fmt.Fprintf(cmd.ErrOrStderr(), "receiving webhooks on http://%s%s (Ctrl-C to stop)\n", ln.Addr(), path)
			go func() {
				<-cmd.Context().Done()
				srv.Close()
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:9000", "listen address")
	cmd.Flags().StringVar(&path, "path", "/webhook", "URL path to accept")
	cmd.Flags().StringSliceVar(&secrets, "secret", nil, "signing secret (whsec_...); repeat during a rotation")
	cmd.Flags().IntVar(&answer, "status", http.StatusOK, "HTTP status to answer verified deliveries with")
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "read the signing secret from this file")
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "with --secret-file: how long to wait for the file to appear")
	return cmd
}

// readSecretFile waits up to wait for path to hold a secret, so a receiver
// can start before the webhook that gives it its secret is created.
func readSecretFile(ctx context.Context, path string, wait time.Duration, log io.Writer) (string, error) {
	deadline := time.Now().Add(wait)
	said := false
	for {
		b, err := os.ReadFile(path)
		if s := strings.TrimSpace(string(b)); err == nil && s != "" {
			return s, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no signing secret in %s after %s", path, wait)
		}
		if !said {
			fmt.Fprintf(log, "waiting for a signing secret in %s\n", path)
			said = true
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
