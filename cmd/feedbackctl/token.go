package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/event"
)

// newToken mints admin JWTs for feedbackd's admin.jwt.hmac_secret, so an
// operator can hand a tenant an org-scoped token without other tools.
func newToken(_ *settings) *cobra.Command {
	var scopes []string
	var ttl time.Duration
	var issuer, audience, secretFile string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint an admin API token (HS256 JWT) for an organisation, or for everything",
		Long: `token signs a JWT that feedbackd's admin API accepts when it is configured
with the same admin.jwt.hmac_secret (FEEDBACKD_ADMIN_JWT_HMAC_SECRET). The
claim scope is what the token may do: admin (everything) or org:<imsOrg>
(that organisation's configs, tests, rotations and replays); --scope may be
given several times. exp is now + --ttl; feedbackd allows 30 s of clock
skew. Pass the secret with FEEDBACKCTL_JWT_SECRET or --secret-file, never
as an argument. Only the token is printed, on stdout.`,
		Example: `  FEEDBACKCTL_JWT_SECRET=$FEEDBACKD_ADMIN_JWT_HMAC_SECRET feedbackctl token --scope org:myImsOrg --ttl 24h
  feedbackctl token --secret-file /etc/feedbackd/admin-jwt --scope admin --ttl 15m --issuer ops`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret := os.Getenv("FEEDBACKCTL_JWT_SECRET")
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return err
				}
				secret = strings.TrimSpace(string(b))
			}
			if len(secret) < 32 {
				return errors.New("the HMAC secret (FEEDBACKCTL_JWT_SECRET or --secret-file) is required and at least 32 bytes, as feedbackd requires")
			}
			if len(scopes) == 0 {
				return errors.New("--scope is required: admin or org:<imsOrg>")
			}
			for _, s := range scopes {
				if org, ok := strings.CutPrefix(s, "org:"); s != "admin" && (!ok || !event.IsTenantID(org)) {
					return fmt.Errorf("--scope %q: want admin or org:<imsOrg> (1 to 128 of A-Z a-z 0-9 @ . _ -)", s)
				}
			}
			if ttl <= 0 || ttl > 366*24*time.Hour {
				return errors.New("--ttl must be positive and at most a year")
			}
			now := time.Now()
			claims := jwt.MapClaims{"scope": strings.Join(scopes, " "), "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
			if issuer != "" {
				claims["iss"] = issuer
			}
			if audience != "" {
				claims["aud"] = audience
			}
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&scopes, "scope", nil, "admin, or org:<imsOrg> (repeatable)")
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	cmd.Flags().StringVar(&issuer, "issuer", "", "iss claim (admin.jwt.issuer, if feedbackd checks one)")
	cmd.Flags().StringVar(&audience, "audience", "", "aud claim (admin.jwt.audience, if feedbackd checks one)")
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "read the HMAC secret from this file")
	return cmd
}
