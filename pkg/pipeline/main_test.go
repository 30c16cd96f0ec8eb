package pipeline

import (
	"os"
	"testing"

	"github.com/feedbackd/feedbackd/test/testenv"
)

func TestMain(m *testing.M) {
	testenv.ServeHoldReceiver() // for BenchmarkInFlight
	os.Exit(m.Run())
}
