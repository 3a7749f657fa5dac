package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

type object = map[string]any

var promDatasource = object{"type": "prometheus", "uid": "${datasource}"}

func queryVariable(name, label string) object {
	return object{
		"name": name, "label": label, "type": "query", "datasource": promDatasource,
		"query": "label_values(up, " + name + ")", "multi": true, "includeAll": true, "allValue": ".+",
	}
}

// cleanDashboard passes every rule; each test breaks one thing in a fresh copy.
func cleanDashboard() object {
	return object{
		"title": "Demo", "editable": false, "schemaVersion": 39,
		"annotations": object{"list": []any{}},
		"templating": object{"list": []any{
			object{"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
			queryVariable("job", "Job"),
			queryVariable("pod", "Pod"),
		}},
		"panels": []any{object{
			"type": "timeseries", "title": "Requests", "id": 1, "description": "Requests per second.",
			"datasource":  promDatasource,
			"fieldConfig": object{"defaults": object{"unit": "reqps"}, "overrides": []any{}},
			"targets": []any{object{
				"refId": "A", "datasource": promDatasource,
				"expr": `sum by (code) (rate(http_requests_total{job=~"$job", pod=~"$pod", code!="200"}[$__rate_interval]))`,
			}},
		}},
	}
}

func panelOf(d object) object { return d["panels"].([]any)[0].(object) }

func targetOf(d object) object { return panelOf(d)["targets"].([]any)[0].(object) }

func lintObject(t *testing.T, d object) []Finding {
	t.Helper()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return lintFile("demo.json", raw)
}

func rulesOf(findings []Finding) []string {
	var rules []string
	for _, f := range findings {
		if !slices.Contains(rules, f.Rule) {
			rules = append(rules, f.Rule)
		}
	}
	slices.Sort(rules)
	return rules
}

func TestCleanDashboardHasNoFinding(t *testing.T) {
	if findings := lintObject(t, cleanDashboard()); len(findings) > 0 {
		t.Fatalf("unexpected findings: %v", findings)
	}
}

func TestEachBreakageIsReportedByItsRule(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(d object)
		rules   []string
		message string
	}{
		{"unknown field", func(d object) { panelOf(d)["colour"] = "red" }, []string{schemaRule}, `panel "Requests": unexpected field 'colour'`},
		{"ill-typed field", func(d object) { panelOf(d)["id"] = "one" }, []string{schemaRule}, "id: json: cannot unmarshal"},
		{"bad PromQL", func(d object) { targetOf(d)["expr"] = "sum(rate(x[$__rate_interval])" }, []string{"target-promql-rule"}, "invalid PromQL query"},
		{"fixed rate range", func(d object) {
			targetOf(d)["expr"] = `rate(http_requests_total{job=~"$job", pod=~"$pod"}[5m])`
		}, []string{"target-rate-interval-rule"}, "rate should use $__rate_interval"},
		{"raw counter", func(d object) {
			targetOf(d)["expr"] = `sum(http_requests_total{job=~"$job", pod=~"$pod"})`
		}, []string{"target-counter-agg-rule"}, "counter metric 'http_requests_total' is not aggregated"},
		{"job matcher is not a regexp", func(d object) {
			targetOf(d)["expr"] = `up{job="$job", pod=~"$pod"}`
		}, []string{"target-job-rule"}, "job selector is =, not =~"},
		{"pod matcher names another variable", func(d object) {
			targetOf(d)["expr"] = `up{job=~"$job", pod=~"$instance"}`
		}, []string{"target-instance-rule"}, `pod selector is "$instance", not "$pod"`},
		{"hard-coded datasource", func(d object) { panelOf(d)["datasource"] = object{"uid": "prom-1"} }, []string{"panel-datasource-rule"}, "uses 'prom-1'"},
		{"no description", func(d object) { delete(panelOf(d), "description") }, []string{"panel-title-description-rule"}, "missing title or description"},
		{"unknown unit", func(d object) {
			panelOf(d)["fieldConfig"] = object{"defaults": object{"unit": "requests"}, "overrides": []any{}}
		}, []string{"panel-units-rule"}, "'requests'"},
		{"no targets", func(d object) { delete(panelOf(d), "targets") }, []string{"panel-no-targets-rule"}, "has no targets"},
		{"editable", func(d object) { d["editable"] = true }, []string{"uneditable-dashboard"}, "editable: false"},
		{"job variable single-valued", func(d object) {
			d["templating"].(object)["list"].([]any)[1].(object)["multi"] = false
		}, []string{"template-job-rule"}, "job template should be a multi select"},
		{"pod variable missing", func(d object) {
			vars := d["templating"].(object)["list"].([]any)
			d["templating"].(object)["list"] = vars[:2]
		}, []string{"template-instance-rule"}, "is missing the pod template"},
		{"datasource variable misnamed", func(d object) {
			d["templating"].(object)["list"].([]any)[0].(object)["name"] = "ds"
			panelOf(d)["datasource"] = object{"uid": "$ds"}
		}, []string{"template-datasource-rule", "template-instance-rule", "template-job-rule"}, "should be named 'prometheus_datasource' or 'datasource'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := cleanDashboard()
			c.breakIt(d)
			findings := lintObject(t, d)
			if got := rulesOf(findings); !slices.Equal(got, c.rules) {
				t.Fatalf("rules %v, want %v: %v", got, c.rules, findings)
			}
			if !slices.ContainsFunc(findings, func(f Finding) bool { return strings.Contains(f.String(), c.message) }) {
				t.Fatalf("no finding says %q: %v", c.message, findings)
			}
		})
	}
}

func TestPanelsInsideRowsAreLinted(t *testing.T) {
	d := cleanDashboard()
	inner := panelOf(d)
	delete(inner, "description")
	d["panels"] = []any{object{
		"type": "row", "title": "Folded", "id": 2, "collapsed": true, "panels": []any{inner},
	}}
	if got := rulesOf(lintObject(t, d)); !slices.Equal(got, []string{"panel-title-description-rule"}) {
		t.Fatalf("rules %v", got)
	}
}

func TestValueMappingsReplaceTheUnit(t *testing.T) {
	d := cleanDashboard()
	panelOf(d)["fieldConfig"] = object{"defaults": object{"mappings": []any{
		object{"type": "value", "options": object{"1": object{"text": "up"}}},
	}}, "overrides": []any{}}
	if findings := lintObject(t, d); len(findings) > 0 {
		t.Fatalf("unexpected findings: %v", findings)
	}
}

func TestIncreaseMayUseAnyRange(t *testing.T) {
	d := cleanDashboard()
	targetOf(d)["expr"] = `sum(increase(http_requests_total{job=~"$job", pod=~"$pod"}[$__range]))`
	if findings := lintObject(t, d); len(findings) > 0 {
		t.Fatalf("unexpected findings: %v", findings)
	}
}

func TestWarningsAloneDoNotFail(t *testing.T) {
	d := cleanDashboard()
	d["templating"].(object)["list"].([]any)[1].(object)["label"] = "Service"
	findings := lintObject(t, d)
	if len(findings) != 1 || findings[0].Severity != SeverityWarning {
		t.Fatalf("want one warning, got %v", findings)
	}
	if !strings.HasSuffix(findings[0].String(), "(warning)") {
		t.Fatalf("warning not marked: %s", findings[0])
	}
}
