package main

import (
	"slices"
	"strings"
)

// instanceLabel replaces `instance` in template-instance-rule and target-instance-rule. Our
// services are scraped per pod (a ServiceMonitor and a PodMonitor of the Prometheus Operator),
// which labels every series with the pod's name; `instance` is the pod IP and port, which
// nobody can read and which changes at every restart, so the per-target filter is the pod.
const instanceLabel = "pod"

// templateDatasourceRule: the dashboard has a templated datasource, named after what it holds.
func (l *linter) templateDatasourceRule() {
	const rule = "template-datasource-rule"
	vars := l.datasourceVariables()
	if len(vars) == 0 {
		l.dashboardError(rule, "does not have a templated data source")
		return
	}
	for _, v := range vars {
		kind := variableQuery(v)
		names := []string{strings.ToLower(kind) + "_datasource"}
		labels := []string{titleWord(kind) + " data source"}
		if len(vars) == 1 {
			// A single datasource variable may keep Grafana's default name.
			names = append(names, "datasource")
			labels = append(labels, "Data source")
		}
		if !slices.Contains(names, v.Name) {
			l.dashboardError(rule, "templated data source variable named '%s', should be named %s",
				v.Name, quoteList(names))
		}
		if label := deref(v.Label); !slices.Contains(labels, label) {
			l.dashboardWarning(rule, "templated data source variable labeled '%s', should be labeled %s",
				label, quoteList(labels))
		}
	}
}

// templateRequiredRule: a Prometheus dashboard has a multi-select query variable `name` over the
// templated datasource, whose "All" matches any value (.+), so every query can filter on it.
func (l *linter) templateRequiredRule(rule, name string) {
	if !l.isPrometheus() {
		return
	}
	v := l.variable(name)
	if v == nil {
		l.dashboardError(rule, "is missing the %s template", name)
		return
	}
	uid := ""
	if v.Datasource != nil {
		uid = deref(v.Datasource.Uid)
	}
	if !l.isDatasourceReference(uid) {
		l.dashboardError(rule, "%s template should use the templated datasource ('${%s}'), is currently '%s'",
			name, l.datasourceVariables()[0].Name, uid)
	}
	if v.Type != "query" {
		l.dashboardError(rule, "%s template should be a Prometheus query, is currently '%s'", name, v.Type)
	}
	if label := deref(v.Label); label != titleWord(name) {
		l.dashboardWarning(rule, "%s template should be labeled '%s', is currently '%s'", name, titleWord(name), label)
	}
	if !deref(v.Multi) {
		l.dashboardError(rule, "%s template should be a multi select", name)
	}
	if all := deref(v.AllValue); all != ".+" {
		l.dashboardError(rule, "%s template allValue should be '.+', is currently '%s'", name, all)
	}
}

// uneditableRule: a provisioned dashboard is not editable; edits made in the UI would be lost
// at the next provisioning anyway.
func (l *linter) uneditableRule() {
	if l.board.Editable {
		l.dashboardError("uneditable-dashboard", "is editable, it should be set to 'editable: false'")
	}
}

// isDatasourceReference tells whether uid names a datasource variable ($name or ${name}).
func (l *linter) isDatasourceReference(uid string) bool {
	for _, v := range l.datasourceVariables() {
		if uid == "$"+v.Name || uid == "${"+v.Name+"}" {
			return true
		}
	}
	return false
}

func titleWord(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func quoteList(list []string) string {
	return "'" + strings.Join(list, "' or '") + "'"
}
