// Command feedbackctl is the operator CLI of feedbackd: it produces events,
// inspects dead letters and runs a verifying test receiver.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	switch {
	case errors.Is(err, errInterrupted):
		os.Exit(130) // as after Ctrl-C; the summary said how to resume
	case err != nil:
		fmt.Fprintln(&terminalWriter{w: os.Stderr}, "feedbackctl:", err) // errors may quote a record
		os.Exit(1)
	}
}
