package kafkaconn

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Need is what a program must be allowed to do: operations (kmsg.ACLOperationRead,
// Write, ...) per topic and per consumer group.
type Need struct {
	Topics map[string][]kmsg.ACLOperation
	Groups map[string][]kmsg.ACLOperation
}

// CheckAccess asks the brokers which operations cl's principal may perform
// on need's topics and groups (Metadata and DescribeGroups with authorized
// operations, KIP-430) and returns an *Error naming every missing
// operation (Permanent), or else the missing topics (not Permanent: they
// may be created yet). A broker too old to say (before Kafka 2.3)
// is trusted. Transactional ids cannot be asked about this way.
func (c *Config) CheckAccess(ctx context.Context, cl *kgo.Client, need Need) error {
	var missing, absent []string
	lack := func(kind, name string, granted int32, ops []kmsg.ACLOperation) {
		if granted == math.MinInt32 {
			return // not reported
		}
		for _, op := range ops {
			if granted&(1<<int32(op)) == 0 {
				missing = append(missing, fmt.Sprintf("%s on %s %s", opName(op), kind, name))
			}
		}
	}

	if len(need.Topics) > 0 {
		req := kmsg.NewPtrMetadataRequest()
		req.IncludeTopicAuthorizedOperations = true
		req.AllowAutoTopicCreation = false
		for _, t := range slices.Sorted(maps.Keys(need.Topics)) {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(t)
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return c.Explain(err)
		}
		for _, t := range resp.Topics {
			name := *t.Topic
			switch err := kerr.ErrorForCode(t.ErrorCode); err {
			case nil:
				lack("topic", name, t.AuthorizedOperations, need.Topics[name])
			case kerr.UnknownTopicOrPartition:
				absent = append(absent, name)
			case kerr.TopicAuthorizationFailed:
				missing = append(missing, fmt.Sprintf("%s on topic %s", opsNames(need.Topics[name]), name))
			default:
				return c.Explain(fmt.Errorf("topic %s: %w", name, err))
			}
		}
	}
	for _, g := range slices.Sorted(maps.Keys(need.Groups)) {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{g}
		req.IncludeAuthorizedOperations = true
		resp, err := req.RequestWith(ctx, cl)
		if errors.Is(err, kerr.GroupAuthorizationFailed) { // finding its coordinator needs Describe
			missing = append(missing, fmt.Sprintf("%s on group %s", opsNames(need.Groups[g]), g))
			continue
		}
		if err != nil {
			return c.Explain(err)
		}
		for _, rg := range resp.Groups {
			switch err := kerr.ErrorForCode(rg.ErrorCode); err {
			case nil, kerr.GroupIDNotFound: // a new group: still answers with the operations
				lack("group", g, rg.AuthorizedOperations, need.Groups[g])
			case kerr.GroupAuthorizationFailed:
				missing = append(missing, fmt.Sprintf("%s on group %s", opsNames(need.Groups[g]), g))
			default:
				return c.Explain(fmt.Errorf("group %s: %w", g, err))
			}
		}
	}
	switch {
	case len(missing) > 0:
		return &Error{Msg: fmt.Sprintf("kafka: not authorized (%s): %s: an ACL is missing (README \"Kafka ACLs\")", principal(c.SASL), strings.Join(missing, ", ")), Permanent: true}
	case len(absent) > 0:
		return &Error{Msg: fmt.Sprintf("kafka: topic %s does not exist", strings.Join(absent, ", "))} // it may be created yet
	}
	return nil
}

func opName(op kmsg.ACLOperation) string {
	s := strings.ToLower(op.String())
	return strings.ToUpper(s[:1]) + s[1:]
}

func opsNames(ops []kmsg.ACLOperation) string {
	var n []string
	for _, op := range ops {
		n = append(n, opName(op))
	}
	return strings.Join(n, "+")
}
