package main

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/promql/parser"
)

// Sample values of Grafana's global variables. The durations are odd on purpose: a range equal
// to rateIntervalSample can only come from $__rate_interval, which is how
// target-rate-interval-rule recognises it after parsing.
const (
	rateIntervalSample = 7777777 * time.Millisecond
	intervalSample     = 6666666 * time.Millisecond
	rangeSample        = 5555555 * time.Millisecond
	autoSample         = 4444444 * time.Millisecond
)

var globalVariables = map[string]string{
	"__rate_interval":    promDuration(rateIntervalSample),
	"__interval":         promDuration(intervalSample),
	"__range":            promDuration(rangeSample),
	"__auto":             promDuration(autoSample),
	"__rate_interval_ms": "7777777",
	"__interval_ms":      "6666666",
	"__range_ms":         "5555555",
	"__range_s":          "5555",
	"__from":             "1594671549254",
	"__to":               "1594672549254",
	"__dashboard":        "dashboard",
	"__name":             "name",
	"__org":              "1",
	"__user":             "1",
	"timeFilter":         "time > now() - 7d",
	"__timeFilter":       "time > now() - 7d",
}

// variableRef matches Grafana's three variable syntaxes: $name, ${name[:format]} and
// [[name[:format]]] (the last one deprecated but still expanded by Grafana).
var variableRef = regexp.MustCompile(`\$(\w+)|\$\{([^}]+)\}|\[\[([^\[\]]+)\]\]`)

// expandVariables replaces the Grafana variables of a query with sample values so that it can be
// parsed as PromQL. Text inside double-quoted strings is kept as written: a label matcher such as
// job=~"$job" stays literal, so the rules can check which variable it names.
func expandVariables(expr string, vars []dashboard.VariableModel) string {
	var b strings.Builder
	start, inString := 0, false
	for i := 0; i < len(expr); i++ {
		switch {
		case inString && expr[i] == '\\':
			i++ // an escaped character, a quote included, does not end the string
		case expr[i] == '"':
			if !inString {
				b.WriteString(expandPlain(expr[start:i], vars))
				start = i
			} else {
				b.WriteString(expr[start : i+1])
				start = i + 1
			}
			inString = !inString
		}
	}
	if inString {
		b.WriteString(expr[start:]) // unterminated: leave it for the parser to report
	} else {
		b.WriteString(expandPlain(expr[start:], vars))
	}
	return b.String()
}

func expandPlain(s string, vars []dashboard.VariableModel) string {
	return variableRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3] // only one group matched
		name, _, _ = strings.Cut(name, ":")
		return sampleValue(name, vars)
	})
}

// sampleValue is a plausible value for a variable: a global's sample, else the variable's
// current value or first option, else its own name (a valid PromQL identifier).
func sampleValue(name string, vars []dashboard.VariableModel) string {
	if v, ok := globalVariables[name]; ok {
		return v
	}
	if strings.HasPrefix(name, "__auto_interval") {
		return promDuration(autoSample)
	}
	for _, v := range vars {
		if v.Name == name {
			if value := variableValue(v); value != "" && !variableRef.MatchString(value) {
				return value
			}
		}
	}
	return name
}

// promDuration writes d in milliseconds, a form PromQL accepts for any duration.
func promDuration(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Milliseconds())
}

// parsePromQL expands the variables of expr and parses it with Prometheus' own parser.
func parsePromQL(expr string, vars []dashboard.VariableModel) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(expandVariables(expr, vars))
}
