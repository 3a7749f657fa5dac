package main

import (
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func TestExpandVariables(t *testing.T) {
	current := "api"
	vars := []dashboard.VariableModel{{
		Name: "svc", Type: "query",
		Current: &dashboard.VariableOption{Value: dashboard.StringOrArrayOfString{String: &current}},
	}}
	cases := map[string]string{
		`rate(x{a="$job"}[$__rate_interval])`: `rate(x{a="$job"}[7777777ms])`,
		`x[${__interval}] offset [[__range]]`: `x[6666666ms] offset 5555555ms`,
		`sum by ($svc) (x)`:                   `sum by (api) (x)`,
		`sum by (${svc:regex}) (x)`:           `sum by (api) (x)`,
		`sum by ($other) (x)`:                 `sum by (other) (x)`,
		`x{a="\"$b"} + $svc`:                  `x{a="\"$b"} + api`,
		`x{a="$b} + $svc`:                     `x{a="$b} + $svc`,
	}
	for in, want := range cases {
		if got := expandVariables(in, vars); got != want {
			t.Errorf("expandVariables(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExpandedQueriesParse(t *testing.T) {
	for _, expr := range []string{
		`histogram_quantile(0.95, sum by (le) (rate(x_bucket{job=~"$job"}[$__rate_interval])))`,
		`increase(x_total[$__range]) / $__range_s`,
		`time() - max(x{pod=~"${pod:regex}"})`,
	} {
		if _, err := parsePromQL(expr, nil); err != nil {
			t.Errorf("%s: %v", expr, err)
		}
	}
}
