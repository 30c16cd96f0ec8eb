package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/event"
)

// eachEvent calls fn for each non-empty line of r with its 1-based number
// and the result of checking it against the event schema.
func eachEvent(r io.Reader, fn func(line int, raw []byte, ev *event.Event, err error) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), event.MaxSize+1)
	n := 0
	for sc.Scan() {
		n++
		if len(sc.Bytes()) == 0 {
			continue
		}
		raw := append([]byte(nil), sc.Bytes()...)
		ev, err := event.Parse(raw)
		if err := fn(n, raw, ev, err); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	return nil
}

// openInput opens FILE, or stdin for "-" or no argument.
func openInput(args []string) (io.Reader, string, func(), error) {
	if len(args) == 0 || args[0] == "-" {
		return os.Stdin, "stdin", func() {}, nil
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, "", nil, err
	}
	return f, args[0], func() { f.Close() }, nil
}

func newValidate(s *settings) *cobra.Command {
	return &cobra.Command{
		Use:   "validate [FILE|-]",
		Short: "Check a JSON Lines file of feedback events against the event schema; send nothing",
		Long: `validate checks each line against schemas/feedback-event.schema.json and
prints the line number and the field at fault of every invalid line. It
exits 1 if any line is invalid.`,
		Example: `  feedbackctl validate config/examples/events.jsonl
  cat events.jsonl | feedbackctl validate -`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, name, done, err := openInput(args)
			if err != nil {
				return err
			}
			defer done()
			type lineError struct {
				Line  int    `json:"line"`
				Error string `json:"error"`
			}
			valid, bad := 0, []lineError{}
			err = eachEvent(in, func(line int, _ []byte, _ *event.Event, err error) error {
				if err != nil {
					bad = append(bad, lineError{line, err.Error()})
					if !s.json() {
						fmt.Fprintf(cmd.OutOrStdout(), "%s:%d: %v\n", name, line, err)
					}
				} else {
					valid++
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			invalid := len(bad)
			if s.json() {
				if err := printJSON(cmd.OutOrStdout(), map[string]any{"file": name, "valid": valid, "invalid": invalid, "errors": bad}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s, %s\n", name, plural(valid, "valid event"), plural(invalid, "invalid line"))
			}
			if invalid > 0 {
				return fmt.Errorf("%d invalid lines", invalid)
			}
			return nil
		},
	}
}
