// Package monitoringcrds keeps prometheus-operator's API types in this module's graph, pinned in
// go.mod and go.sum, so that hack/build-tool.sh can run controller-gen on them: the
// ServiceMonitor and PrometheusRule CRDs are generated from the types, as prometheus-operator
// generates its own, and installed into the local control plane to validate the chart's objects.
package monitoringcrds

import (
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)
