package main

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Severity of a finding: errors fail the run, warnings are only printed.
type Severity int

const (
	SeverityError Severity = iota
	SeverityWarning
)

// Finding is one rule violation.
type Finding struct {
	Rule     string
	Subject  string // `dashboard "title"` or `panel "title"`
	Message  string
	Severity Severity
}

func (f Finding) String() string {
	s := fmt.Sprintf("%s: %s: %s", f.Rule, f.Subject, f.Message)
	if f.Severity == SeverityWarning {
		s += " (warning)"
	}
	return s
}

// Panel types the original linter checks; a panel of another type (text, row, news...) carries
// no query, so the query rules leave it alone.
const (
	panelStat       = "stat"
	panelSingleStat = "singlestat"
	panelGauge      = "gauge"
	panelGraph      = "graph"
	panelTimeSeries = "timeseries"
	panelTable      = "table"
	panelTimeline   = "state-timeline"
)

// metricPanels show numbers from queries: they need a datasource, targets, title, description
// and a unit. Unlike grafana/dashboard-linter, stat and gauge panels also need the templated
// datasource: a hard-coded one breaks them as surely as it breaks a time series.
var metricPanels = map[string]bool{
	panelStat: true, panelSingleStat: true, panelGauge: true,
	panelGraph: true, panelTimeSeries: true, panelTable: true,
}

// queryPanels are the panels whose Prometheus queries are parsed.
var queryPanels = map[string]bool{
	panelStat: true, panelSingleStat: true, panelGauge: true,
	panelTimeSeries: true, panelTable: true, panelTimeline: true,
}

// linter collects the findings about one dashboard.
type linter struct {
	board    *Board
	findings []Finding
}

func (l *linter) dashboardSubject() string { return fmt.Sprintf("dashboard %q", l.board.Title) }

func (l *linter) dashboardError(rule, format string, args ...any) {
	l.add(rule, l.dashboardSubject(), SeverityError, format, args...)
}

func (l *linter) dashboardWarning(rule, format string, args ...any) {
	l.add(rule, l.dashboardSubject(), SeverityWarning, format, args...)
}

func (l *linter) panelError(rule string, p *dashboard.Panel, format string, args ...any) {
	l.add(rule, fmt.Sprintf("panel %q", panelTitle(p)), SeverityError, format, args...)
}

func (l *linter) add(rule, subject string, sev Severity, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.findings = append(l.findings, Finding{Rule: rule, Subject: subject, Message: msg, Severity: sev})
}

// datasourceVariables are the dashboard's variables of type datasource.
func (l *linter) datasourceVariables() []dashboard.VariableModel {
	var out []dashboard.VariableModel
	for _, v := range l.board.Variables {
		if strings.EqualFold(string(v.Type), "datasource") {
			out = append(out, v)
		}
	}
	return out
}

// isPrometheus tells whether the dashboard's (first) templated datasource is Prometheus: the
// PromQL rules only apply then, as in the original.
func (l *linter) isPrometheus() bool {
	ds := l.datasourceVariables()
	return len(ds) > 0 && variableQuery(ds[0]) == "prometheus"
}

func (l *linter) variable(name string) *dashboard.VariableModel {
	for i := range l.board.Variables {
		if l.board.Variables[i].Name == name {
			return &l.board.Variables[i]
		}
	}
	return nil
}

// lint applies every rule to a decoded dashboard.
func lint(b *Board) []Finding {
	l := &linter{board: b}
	l.templateDatasourceRule()
	l.templateRequiredRule("template-job-rule", "job")
	l.templateRequiredRule("template-instance-rule", instanceLabel)
	for _, p := range b.Panels {
		l.panelDatasourceRule(p)
		l.panelTitleDescriptionRule(p)
		l.panelUnitsRule(p)
		l.panelNoTargetsRule(p)
		for _, t := range targets(p) {
			l.targetRules(p, t)
		}
	}
	l.uneditableRule()
	return l.findings
}
