package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/feedbackd/feedbackd/pkg/event"
)

// eachEvent calls fn for each event of r with the 1-based number of the
// line it starts on and the result of checking it against the event
// schema. r holds JSON Lines (one event per line), or JSON documents that
// span lines, such as one pretty-printed event: when the first line is not
// a JSON value of its own, the input is read as a sequence of documents,
// each passed to fn compacted.
func eachEvent(r io.Reader, fn func(line int, raw []byte, ev *event.Event, err error) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := br.ReadBytes('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("line 1: %w", err)
	}
	rest := io.MultiReader(bytes.NewReader(first), br)
	if t := bytes.TrimSpace(first); len(t) > 0 && t[0] == '{' && !json.Valid(t) {
		return eachDocument(rest, fn)
	}
	sc := bufio.NewScanner(rest)
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

// maxDocuments bounds the input eachDocument reads.
const maxDocuments = 64 << 20

// eachDocument is eachEvent for JSON documents that span lines.
func eachDocument(r io.Reader, fn func(line int, raw []byte, ev *event.Event, err error) error) error {
	all, err := io.ReadAll(io.LimitReader(r, maxDocuments+1))
	if err != nil {
		return err
	}
	if len(all) > maxDocuments {
		return fmt.Errorf("over %d MiB of multi-line JSON: write one event per line (JSON Lines)", maxDocuments>>20)
	}
	dec := json.NewDecoder(bytes.NewReader(all))
	for {
		start := dec.InputOffset()
		var doc json.RawMessage
		err := dec.Decode(&doc)
		if err == io.EOF {
			return nil
		}
		off := start + int64(len(all[start:])-len(bytes.TrimLeft(all[start:], " \t\r\n")))
		line := bytes.Count(all[:off], []byte("\n")) + 1
		if err != nil {
			return fmt.Errorf("line %d: not valid JSON: %w", line, err)
		}
		var compact bytes.Buffer
		_ = json.Compact(&compact, doc)
		raw := compact.Bytes()
		ev, perr := event.Parse(raw)
		if err := fn(line, raw, ev, perr); err != nil {
			return err
		}
	}
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
		Short: "Check feedback events (JSON Lines, or a JSON file) against the event schema; send nothing",
		Long: `validate checks each event against schemas/feedback-event.schema.json and
prints the line number and the field at fault of every invalid one. It
exits 1 if any is invalid. The input is JSON Lines (one event per line) or
JSON documents spanning lines, such as one pretty-printed event.`,
		Example: `  feedbackctl validate config/examples/events.jsonl
  feedbackctl validate config/examples/event.json
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
