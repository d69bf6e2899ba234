// kstatus-check prints what the real GitOps status libraries say about Kubernetes objects, so
// tests can hold the Argo CD health script to the same verdicts.
//
// Input (stdin): a JSON array of objects. Output (stdout): a JSON array, one entry per object:
//
//	{"kstatus": "<status>", "kstatusMessage": "...", "flux": "<status>"}
//
// "kstatus" is sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, what kpt, Config Sync and
// `kubectl`-style appliers read. "flux" is only set with -flux-exprs FILE: the verdict of Flux's
// own evaluator for Kustomization.spec.healthCheckExprs (github.com/fluxcd/pkg/runtime/cel,
// RFC 0009), given FILE: one entry of healthCheckExprs (apiVersion, kind, current, inProgress,
// failed) in YAML; "Error: ..." when an expression cannot be evaluated on the object.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fluxcd/pkg/apis/kustomize"
	fluxcel "github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type verdict struct {
	Kstatus        string `json:"kstatus"`
	KstatusMessage string `json:"kstatusMessage"`
	Flux           string `json:"flux,omitempty"`
}

func main() {
	exprsFile := flag.String("flux-exprs", "", "YAML file with one healthCheckExprs entry")
	flag.Parse()
	if err := run(*exprsFile); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus-check:", err)
		os.Exit(1)
	}
}

func run(exprsFile string) error {
	var evaluator *fluxcel.StatusEvaluator
	if exprsFile != "" {
		raw, err := os.ReadFile(exprsFile)
		if err != nil {
			return err
		}
		var check kustomize.CustomHealthCheck
		if err := yaml.UnmarshalStrict(raw, &check); err != nil {
			return fmt.Errorf("%s: %w", exprsFile, err)
		}
		if evaluator, err = fluxcel.NewStatusEvaluator(&check.HealthCheckExpressions); err != nil {
			return fmt.Errorf("%s: %w", exprsFile, err)
		}
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	// apimachinery's decoder keeps integers int64, as the API server's own objects are.
	var objects []any
	if err := utiljson.Unmarshal(raw, &objects); err != nil {
		return fmt.Errorf("reading objects from stdin: %w", err)
	}
	verdicts := make([]verdict, 0, len(objects))
	for i, item := range objects {
		object, ok := item.(map[string]any)
		if !ok {
			return fmt.Errorf("object %d is not a JSON object", i)
		}
		u := &unstructured.Unstructured{Object: object}
		result, err := status.Compute(u)
		if err != nil {
			return fmt.Errorf("object %d: kstatus: %w", i, err)
		}
		v := verdict{Kstatus: result.Status.String(), KstatusMessage: result.Message}
		if evaluator != nil {
			// An expression that fails to evaluate leaves Flux retrying until its timeout.
			if flux, err := evaluator.Evaluate(context.Background(), u); err != nil {
				v.Flux = "Error: " + err.Error()
			} else {
				v.Flux = flux.Status.String()
			}
		}
		verdicts = append(verdicts, v)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	return out.Encode(verdicts)
}
