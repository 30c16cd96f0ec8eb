package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/webhook"
)

func newCampaigns(s *settings) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "campaigns",
		Short: "Enable or disable webhooks per campaign",
		Long: `campaigns changes which campaigns of a webhook config get webhooks. A config
whose campaigns are ["*"] gets every campaign; disabling one campaign then
needs an explicit list first (webhooks edit --campaigns id1,id2).`,
	}
	change := func(use, short, method, example string) *cobra.Command {
		return &cobra.Command{
			Use:     use + " ORG SANDBOX CAMPAIGN",
			Short:   short,
			Example: example,
			Args:    cobra.ExactArgs(3),
			RunE: func(cmd *cobra.Command, args []string) error {
				var c webhook.Config
				path := webhookPath(args[0], args[1]) + "/campaigns/" + url.PathEscape(args[2])
				if err := s.api().do(cmd.Context(), method, path, nil, &c); err != nil {
					return err
				}
				if s.json() {
					return printJSON(cmd.OutOrStdout(), c)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s/%s campaigns: %s\n", c.Org, c.Sandbox.ID, strings.Join(c.Campaigns, ", "))
				return nil
			},
		}
	}
	list := &cobra.Command{
		Use:     "list ORG SANDBOX",
		Short:   "List the campaigns a webhook config is enabled for",
		Example: "  feedbackctl campaigns list myImsOrg my-sandbox",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var c webhook.Config
			if err := s.api().do(cmd.Context(), "GET", webhookPath(args[0], args[1]), nil, &c); err != nil {
				return err
			}
			if s.json() {
				return printJSON(cmd.OutOrStdout(), c.Campaigns)
			}
			for _, id := range c.Campaigns {
				if id == webhook.AllCampaigns {
					fmt.Fprintln(cmd.OutOrStdout(), "* (every campaign)")
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
			}
			return nil
		},
	}
	cmd.AddCommand(
		change("enable", "Send webhooks for a campaign", "PUT", "  feedbackctl campaigns enable myImsOrg my-sandbox 16f24a15-7e21-477c-848a-d5695ca7f137"),
		change("disable", "Stop webhooks for a campaign (its events are skipped)", "DELETE", "  feedbackctl campaigns disable myImsOrg my-sandbox 16f24a15-7e21-477c-848a-d5695ca7f137"),
		list,
	)
	return cmd
}
