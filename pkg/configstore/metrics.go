package configstore

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the config store.
type Metrics struct {
	lookups  *prometheus.CounterVec
	applied  prometheus.Counter
	rebuilds prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		lookups: f.NewCounterVec(prometheus.CounterOpts{
			Name: "feedbackd_config_lookups_total",
			Help: "Config lookups by layer (local cache, redis) and result (hit, miss, error).",
		}, []string{"layer", "result"}),
		applied: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_config_changes_applied_total",
			Help: "Records of the configs topic applied to Redis by this instance.",
		}),
		rebuilds: f.NewCounter(prometheus.CounterOpts{
			Name: "feedbackd_config_redis_rebuilds_total",
			Help: "Times this instance found Redis without the configs and replayed the topic.",
		}),
	}
	for _, layer := range []string{"local", "redis"} {
		for _, result := range []string{"hit", "miss", "error"} {
			m.lookups.WithLabelValues(layer, result)
		}
	}
	return m
}
