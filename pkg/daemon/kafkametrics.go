package daemon

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// kafkaMetrics returns franz-go's client metrics (feedbackd_kafka_*) for the
// pipeline's client, registered on reg. kprom names two gauges
// buffered_{fetch,produce}_records_total, which `promtool check metrics`
// refuses (a gauge must not end in _total); they are left out and exported
// by bufferedGauges under correct names.
func kafkaMetrics(reg prometheus.Registerer) *kprom.Metrics {
	return kprom.NewMetrics("feedbackd", kprom.Subsystem("kafka"), kprom.Registerer(dropping{
		Registerer: reg,
		names:      []string{"feedbackd_kafka_buffered_fetch_records_total", "feedbackd_kafka_buffered_produce_records_total"},
	}))
}

func bufferedGauges(reg prometheus.Registerer, cl *kgo.Client) {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackd_kafka_buffered_fetch_records",
		Help: "Records fetched and buffered in the pipeline's Kafka client, not yet polled.",
	}, func() float64 { return float64(cl.BufferedFetchRecords()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "feedbackd_kafka_buffered_produce_records",
		Help: "Records buffered in the pipeline's Kafka client, not yet acknowledged by a broker.",
	}, func() float64 { return float64(cl.BufferedProduceRecords()) })
}

// dropping is a Registerer that silently skips collectors with the given
// fully-qualified names.
type dropping struct {
	prometheus.Registerer
	names []string
}

func (d dropping) skip(c prometheus.Collector) bool {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	skip := false
	for desc := range ch {
		for _, n := range d.names {
			// Desc has no name accessor; its String form is stable.
			if strings.Contains(desc.String(), `fqName: "`+n+`"`) {
				skip = true
			}
		}
	}
	return skip
}

func (d dropping) Register(c prometheus.Collector) error {
	if d.skip(c) {
		return nil
	}
	return d.Registerer.Register(c)
}

func (d dropping) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err) // as prometheus.Registerer.MustRegister documents
		}
	}
}

func (d dropping) Unregister(c prometheus.Collector) bool {
	if d.skip(c) {
		return true
	}
	return d.Registerer.Unregister(c)
}
