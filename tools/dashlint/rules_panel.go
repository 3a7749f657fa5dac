package main

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
)

// panelDatasourceRule: a metric panel queries the templated datasource, so the dashboard works
// against whichever Prometheus the viewer picks.
func (l *linter) panelDatasourceRule(p *dashboard.Panel) {
	if !metricPanels[p.Type] {
		return
	}
	uid := ""
	if p.Datasource != nil {
		uid = deref(p.Datasource.Uid)
	}
	if !l.isDatasourceReference(uid) {
		l.panelError("panel-datasource-rule", p, "does not use a templated datasource, uses '%s'", uid)
	}
}

// panelTitleDescriptionRule: a metric panel says what it shows (the description is its tooltip).
func (l *linter) panelTitleDescriptionRule(p *dashboard.Panel) {
	if !metricPanels[p.Type] {
		return
	}
	if deref(p.Title) == "" || deref(p.Description) == "" {
		l.panelError("panel-title-description-rule", p,
			"has missing title or description, currently has title '%s' and description: '%s'",
			deref(p.Title), deref(p.Description))
	}
}

// panelUnitsRule: a metric panel names the unit of its numbers with one of Grafana's unit ids,
// unless value mappings replace the numbers or a stat panel shows a non-numeric field.
func (l *linter) panelUnitsRule(p *dashboard.Panel) {
	if !metricPanels[p.Type] || showsNonNumericField(p) || hasValueMappings(p) {
		return
	}
	unit := configuredUnit(p)
	if unit == "" || !grafanaUnits[unit] {
		l.panelError("panel-units-rule", p, "has no or invalid units defined: '%s'", unit)
	}
}

// panelNoTargetsRule: a metric panel has at least one query.
func (l *linter) panelNoTargetsRule(p *dashboard.Panel) {
	if metricPanels[p.Type] && len(p.Targets) == 0 {
		l.panelError("panel-no-targets-rule", p, "has no targets")
	}
}

// configuredUnit is the unit the panel displays: an override's, else the default's.
func configuredUnit(p *dashboard.Panel) string {
	if p.FieldConfig == nil {
		return ""
	}
	for _, o := range p.FieldConfig.Overrides {
		for _, prop := range o.Properties {
			if unit, ok := prop.Value.(string); ok && prop.Id == "unit" {
				return unit
			}
		}
	}
	return deref(p.FieldConfig.Defaults.Unit)
}

func hasValueMappings(p *dashboard.Panel) bool {
	if p.FieldConfig == nil {
		return false
	}
	for _, o := range p.FieldConfig.Overrides {
		for _, prop := range o.Properties {
			if prop.Id == "mappings" && prop.Value != nil {
				return true
			}
		}
	}
	return len(p.FieldConfig.Defaults.Mappings) > 0
}

// showsNonNumericField: a stat panel whose reduceOptions.fields names a field shows that field
// (often a string), not a number with a unit.
func showsNonNumericField(p *dashboard.Panel) bool {
	if p.Type != panelStat {
		return false
	}
	opts, ok := p.Options.(*stat.Options)
	return ok && deref(opts.ReduceOptions.Fields) != ""
}
