package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// targetRules checks one Prometheus query. A query that does not parse is reported by
// target-promql-rule alone: the other rules need its syntax tree.
func (l *linter) targetRules(p *dashboard.Panel, t Target) {
	if !l.isPrometheus() || !queryPanels[p.Type] {
		return
	}
	report := func(rule, format string, args ...any) {
		l.panelError(rule, p, "target %s: "+format, append([]any{t.RefID}, args...)...)
	}
	expr, err := parsePromQL(t.Expr, l.board.Variables)
	if err != nil {
		report("target-promql-rule", "invalid PromQL query '%s': %v", t.Expr, err)
		return
	}
	if err := parser.Walk(rateIntervalInspector, expr, nil); err != nil {
		report("target-rate-interval-rule", "query '%s': %v", t.Expr, err)
	}
	for _, m := range []struct{ rule, label string }{
		{"target-job-rule", "job"}, {"target-instance-rule", instanceLabel},
	} {
		for _, problem := range requiredMatcherProblems(expr, m.label) {
			report(m.rule, "query '%s': %s", t.Expr, problem)
		}
	}
	if err := parser.Walk(counterAggInspector, expr, nil); err != nil {
		report("target-counter-agg-rule", "query '%s': %v", t.Expr, err)
	}
}

// inspector adapts a function to parser.Visitor; the first error stops the walk.
type inspector func(node parser.Node, path []parser.Node) error

func (f inspector) Visit(node parser.Node, path []parser.Node) (parser.Visitor, error) {
	if err := f(node, path); err != nil {
		return nil, err
	}
	return f, nil
}

// rateIntervalInspector: rate() and irate() take their range from $__rate_interval, which
// Grafana keeps at least four scrape intervals wide; a fixed range is either too short for a
// slow scrape (no points, an empty graph) or smooths over what the viewer zoomed in on.
var rateIntervalInspector = inspector(func(node parser.Node, path []parser.Node) error {
	sel, ok := node.(*parser.MatrixSelector)
	if !ok || sel.Range == rateIntervalSample || len(path) == 0 {
		return nil
	}
	call, ok := path[len(path)-1].(*parser.Call)
	if ok && (call.Func.Name == "rate" || call.Func.Name == "irate") {
		return fmt.Errorf("%s should use $__rate_interval", call.Func.Name)
	}
	return nil
})

// counterAggInspector: a counter (a metric named *_total) only means something as a rate or an
// increase. Unlike grafana/dashboard-linter, which compares the suffix of the whole selector
// text (so a selector with label matchers always passed), this looks at the metric name.
var counterAggInspector = inspector(func(node parser.Node, path []parser.Node) error {
	sel, ok := node.(*parser.VectorSelector)
	if !ok || !strings.HasSuffix(metricName(sel), "_total") {
		return nil
	}
	err := fmt.Errorf("counter metric '%s' is not aggregated with rate, irate, or increase", metricName(sel))
	if len(path) < 2 {
		return err
	}
	if _, ranged := path[len(path)-1].(*parser.MatrixSelector); !ranged {
		return err
	}
	call, ok := path[len(path)-2].(*parser.Call)
	if !ok || (call.Func.Name != "rate" && call.Func.Name != "irate" && call.Func.Name != "increase") {
		return err
	}
	return nil
})

func metricName(sel *parser.VectorSelector) string {
	if sel.Name != "" {
		return sel.Name
	}
	for _, m := range sel.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// requiredMatcherProblems: every selector filters on the dashboard variable of the same name
// (label=~"$label"), so the variable's selection narrows every panel.
func requiredMatcherProblems(expr parser.Expr, label string) []string {
	var problems []string
	for _, matchers := range parser.ExtractSelectors(expr) {
		if err := checkMatcher(matchers, label); err != nil {
			problems = append(problems, err.Error())
		}
	}
	return problems
}

func checkMatcher(matchers []*labels.Matcher, label string) error {
	want := []string{"$" + label, "${" + label + "}"}
	for _, m := range matchers {
		if m.Name != label {
			continue
		}
		if m.Type != labels.MatchRegexp {
			return fmt.Errorf("%s selector is %s, not %s", label, m.Type, labels.MatchRegexp)
		}
		if m.Value != want[0] && m.Value != want[1] {
			return fmt.Errorf("%s selector is %q, not %q", label, m.Value, want[0])
		}
		return nil
	}
	return errors.New(label + " selector not found")
}
