package xds

import (
	"math"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func durationOf(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func wrapBool(b bool) *wrapperspb.BoolValue { return wrapperspb.Bool(b) }

func wrapU32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }

// mustAny packs m, deterministically (maps in key order), so that equal configuration gives
// equal bytes and so equal resource versions. Packing a generated message cannot fail; a
// failure is a bug.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true})
	if err != nil {
		panic("xds: pack " + string(m.ProtoReflect().Descriptor().FullName()) + ": " + err.Error())
	}
	return a
}

// percent converts an Istio percentage (0..100, a double) to an Envoy fraction per million.
func percent(v float64) *typev3.FractionalPercent {
	if math.IsNaN(v) || v < 0 {
		v = 0
	}
	if v > 100 {
		v = 100
	}
	return &typev3.FractionalPercent{Numerator: uint32(math.Round(v * 10000)), Denominator: typev3.FractionalPercent_MILLION}
}

// adsConfigSource is the ConfigSource of every dynamic resource: the ADS stream, v3.
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func wrapU64(v uint64) *wrapperspb.UInt64Value { return wrapperspb.UInt64(v) }
