package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/dlq"
)

func newDLQ(s *settings) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect the dead-letter topic",
	}
	var topic string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "Print dead-letter records with their reason headers, oldest first",
		Long: `list reads the dead-letter topic from its start to its current end, without
a consumer group (feedbackd's offsets are not touched), and prints each
record's dlq-* headers, oldest failure first; --limit keeps the oldest N.
With -o json it prints one JSON object per record, including the original
key and value. The whole topic is read to sort it.`,
		Example: `  feedbackctl dlq list
  feedbackctl dlq list --limit 20 -o json | jq 'select(.reason=="rejected")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var recs []dlq.Record
			err := dlq.Scan(cmd.Context(), s.kafkaOpts(), topic, func(r dlq.Record) bool {
				recs = append(recs, r)
				return true
			})
			if err != nil {
				return err
			}
			slices.SortStableFunc(recs, func(a, b dlq.Record) int {
				if c := a.FailedAt.Compare(b.FailedAt); c != 0 {
					return c
				}
				return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
			})
			if limit > 0 && len(recs) > limit {
				recs = recs[:limit]
			}
			if s.output() == "json" {
				return printDLQJSON(cmd.OutOrStdout(), recs)
			}
			printDLQTable(cmd.OutOrStdout(), recs)
			return nil
		},
	}
	list.Flags().StringVar(&topic, "topic", "feedback.dlq", "dead-letter topic")
	list.Flags().IntVar(&limit, "limit", 100, "print at most this many records (0: all)")
	cmd.AddCommand(list)
	return cmd
}

func printDLQTable(w io.Writer, recs []dlq.Record) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION/OFFSET\tFAILED AT\tREASON\tWEBHOOK-ID\tATTEMPTS\tLAST STATUS\tLAST ERROR\tSOURCE")
	for _, r := range recs {
		if r.Err != nil {
			fmt.Fprintf(tw, "%d/%d\t-\t(unreadable: %v)\t\t\t\t\t\n", r.Partition, r.Offset, r.Err)
			continue
		}
		status := "-"
		if r.LastStatus != 0 {
			status = strconv.Itoa(r.LastStatus)
		}
		fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Partition, r.Offset, r.FailedAt.Format(time.RFC3339),
			r.Reason, r.WebhookID, r.Attempts, status, orDash(r.LastError), r.Source)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d dead-letter records\n", len(recs))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printDLQJSON(w io.Writer, recs []dlq.Record) error {
	enc := json.NewEncoder(w)
	for _, r := range recs {
		headers := map[string]string{}
		for _, h := range r.Headers {
			headers[h.Key] = string(h.Value)
		}
		out := map[string]any{
			"partition": r.Partition, "offset": r.Offset, "reason": r.Reason, "webhookId": r.WebhookID,
			"attempts": r.Attempts, "lastStatus": r.LastStatus, "lastError": r.LastError,
			"failedAt": r.FailedAt, "source": r.Source, "key": string(r.Key), "headers": headers,
		}
		if !r.FirstAttemptAt.IsZero() {
			out["firstAttemptAt"] = r.FirstAttemptAt
		}
		if json.Valid(r.Value) {
			out["value"] = json.RawMessage(r.Value)
		} else {
			out["value"] = string(r.Value)
		}
		if r.Err != nil {
			out["error"] = r.Err.Error()
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	return nil
}
