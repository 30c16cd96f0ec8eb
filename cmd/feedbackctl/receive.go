package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/receiver"
)

func newReceive(_ *settings) *cobra.Command {
	var addr, path string
	var secrets []string
	var answer int
	cmd := &cobra.Command{
		Use:   "receive",
		Short: "Run a webhook endpoint that verifies feedbackd's signatures and prints what arrives",
		Long: `receive listens for webhooks, checks each one's Standard Webhooks signature
against the signing secret you got when creating the webhook config, and
prints one line per delivery: verified ones are answered with --status,
others with 401. Pass the secret with --secret or FEEDBACKCTL_SECRET (the
environment keeps it out of your shell history and the process list).`,
		Example: `  FEEDBACKCTL_SECRET=whsec_... feedbackctl receive --addr 127.0.0.1:9000
  feedbackctl receive --secret whsec_... --status 503   # watch feedbackd retry`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(secrets) == 0 {
				if s := os.Getenv("FEEDBACKCTL_SECRET"); s != "" {
					secrets = []string{s}
				}
			}
			if len(secrets) == 0 {
				return errors.New("a signing secret is required: --secret or FEEDBACKCTL_SECRET")
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
	return cmd
}
