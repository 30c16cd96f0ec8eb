// Command devbroker runs a single-node Kafka-protocol broker (kfake) for
// development and tests, where no Kafka cluster is at hand. It is not Kafka:
// use a real cluster (see docker-compose.yml) for anything that matters.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9092", "listen address (127.0.0.1:PORT)")
	dataDir := flag.String("data-dir", "", "keep data in this directory (default: memory only)")
	flag.Parse()
	_, portStr, err := net.SplitHostPort(*addr)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil {
		fmt.Fprintln(os.Stderr, "devbroker: --addr must be 127.0.0.1:PORT")
		os.Exit(2)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port)}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devbroker:", err)
		os.Exit(1)
	}
	fmt.Println("devbroker: Kafka-protocol broker (kfake) listening on", c.ListenAddrs()[0])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	c.Close()
}
