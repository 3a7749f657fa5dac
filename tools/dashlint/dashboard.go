package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// schemaRule names the findings of the strict decoding: the dashboard does not fit Grafana's
// schema (unknown field, wrong type, missing required field), so no other rule can trust it.
const schemaRule = "dashboard-schema"

// Without the registered plugins the SDK decodes panel options, field config and queries as
// untyped maps and accepts anything in them.
var registerPlugins = sync.OnceFunc(plugins.RegisterDefaultPlugins)

// Board is the part of a dashboard the rules read.
type Board struct {
	Title     string
	Editable  bool
	Variables []dashboard.VariableModel
	// Panels lists every panel, those nested in rows included; rows themselves are left out.
	Panels []*dashboard.Panel
}

// Target is one query of a panel.
type Target struct {
	RefID      string
	Expr       string
	Datasource *common.DataSourceRef
}

// decode reads a dashboard with Grafana's schema types, strictly: every schema violation is
// returned as its own error, with the JSON path of the offending field.
func decode(raw []byte) (*Board, []error) {
	registerPlugins()
	var d dashboard.Dashboard
	// The SDK's strict decoders return their error list even when it is empty (a non-nil error
	// holding a nil slice), and some of its callers then drop the value they decoded: panels,
	// queries and panel options vanish from a dashboard that has no error at all. So the strict
	// pass only validates, and the same types are then filled by the SDK's lenient decoders,
	// which cannot meet anything the strict pass did not accept.
	if errs := splitErrors(new(dashboard.Dashboard).UnmarshalJSONStrict(raw)); len(errs) > 0 {
		return nil, errs
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, []error{err}
	}
	b := &Board{Title: deref(d.Title), Editable: d.Editable == nil || *d.Editable}
	b.Variables = d.Templating.List
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			b.Panels = append(b.Panels, p.Panel)
		case p.RowPanel != nil:
			for i := range p.RowPanel.Panels {
				b.Panels = append(b.Panels, &p.RowPanel.Panels[i])
			}
		}
	}
	return b, nil
}

func splitErrors(err error) []error {
	if err == nil {
		return nil
	}
	var many cog.BuildErrors
	if !errors.As(err, &many) {
		return []error{err}
	}
	out := make([]error, 0, len(many))
	for _, e := range many {
		out = append(out, e)
	}
	return out
}

// targets returns the queries of a panel. Prometheus queries come typed from the SDK; a query
// whose datasource type the SDK does not know stays a map, and its expr is read from there.
func targets(p *dashboard.Panel) []Target {
	out := make([]Target, 0, len(p.Targets))
	for _, q := range p.Targets {
		switch q := q.(type) {
		case *prometheus.Dataquery:
			out = append(out, Target{RefID: deref(q.RefId), Expr: q.Expr, Datasource: q.Datasource})
		case variants.UnknownDataquery:
			expr, _ := q["expr"].(string)
			ref, _ := q["refId"].(string)
			out = append(out, Target{RefID: ref, Expr: expr})
		}
	}
	return out
}

// variableValue is the value a variable would have in Grafana before the user picks one: its
// current value, else its first option; "" when it has neither.
func variableValue(v dashboard.VariableModel) string {
	if v.Current != nil {
		if s := optionString(v.Current.Value); s != "" {
			return s
		}
	}
	if len(v.Options) > 0 {
		return optionString(v.Options[0].Value)
	}
	return ""
}

func optionString(v dashboard.StringOrArrayOfString) string {
	if v.String != nil {
		return *v.String
	}
	if len(v.ArrayOfString) > 0 {
		return v.ArrayOfString[0]
	}
	return ""
}

// variableQuery is the query text of a variable: a string, or the "query" key of a map.
func variableQuery(v dashboard.VariableModel) string {
	if v.Query == nil {
		return ""
	}
	if v.Query.String != nil {
		return *v.Query.String
	}
	s, _ := v.Query.Map["query"].(string)
	return s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func panelTitle(p *dashboard.Panel) string {
	if p.Title == nil {
		return fmt.Sprintf("#%d", deref(p.Id))
	}
	return *p.Title
}
