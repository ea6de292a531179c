package configfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/straitmesh/strait/internal/yamlpos"
)

// FieldError is a semantic validation problem a component's Validate
// reports for one key. Key is dotted with the mapstructure tag spelling,
// list items by index: "listen.admin", "services.2.endpoints.0" (the form
// "services[2].endpoints[0]" is accepted too).
type FieldError struct {
	Key string
	Msg string
}

// Error returns "key: msg".
func (e *FieldError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// Errorf returns a FieldError for key with a formatted message.
func Errorf(key, format string, args ...any) *FieldError {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Problem is one positioned problem; its Key is a configuration key.
type Problem = yamlpos.Problem

// Error holds every problem Load found.
type Error = yamlpos.Error

// maxRendered is how many problems an Error renders.
const maxRendered = yamlpos.MaxRendered

// Options says where Load reads configuration from.
type Options struct {
	// File is the path of the YAML file; "" means no file (environment,
	// flags and defaults only).
	File string
	// EnvPrefix prefixes environment variable names, e.g. "STRAIT" reads
	// STRAIT_LISTEN_ADMIN for listen.admin. "" disables the environment.
	EnvPrefix string
	// Flags is optional; only flags that were Changed and are listed in
	// FlagKeys override.
	Flags *pflag.FlagSet
	// FlagKeys maps a flag name to the dotted key it sets, e.g.
	// "cluster" -> "cluster". Every entry must name a defined flag and a
	// leaf key, or Load reports it.
	FlagKeys map[string]string
	// Subset says out holds only some of the file's keys, e.g. what a
	// client needs from a gateway's config: other keys are skipped, not
	// reported as unknown. The keys out does hold are checked as usual.
	Subset bool
}

// keyDelim separates key segments inside viper. It is not "." so that map
// keys such as "app.kubernetes.io/name" stay whole; the walker rejects keys
// that contain it.
const keyDelim = "\x00"

// Limits on what Load reads from a file; real config files are far below
// them.
const (
	// nodeBudget bounds the nodes read, aliases expanded, so an aliased
	// document cannot make Load do unbounded work.
	nodeBudget = 200_000
	// maxFileProblems stops the reading of a file that is mostly wrong,
	// usually not a config file at all.
	maxFileProblems = 1000
)

// Load fills out (a pointer to a struct already holding defaults) from the
// file, then the environment, then flags, and then, if out has a
// Validate() error method, calls it and turns each *FieldError into a
// positioned Problem. Any problem yields an *Error holding all of them, and
// out may then be partly filled. A non-pointer out is a programming error
// and yields a plain error.
func Load(opts Options, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("configfile: Load needs a non-nil pointer to a struct, got %T", out)
	}
	t := rv.Elem().Type()

	r := yamlpos.NewReader(yamlpos.Options{File: opts.File, Aliases: true, FoldCase: true, Subset: opts.Subset,
		MaxNodes: nodeBudget, MaxProblems: maxFileProblems})
	var fileMap map[string]any
	parsed := true
	if opts.File != "" {
		data, err := os.ReadFile(opts.File)
		if err != nil {
			return &Error{Problems: []Problem{readProblem(opts.File, err)}}
		}
		root, ok := r.Parse(data)
		parsed = ok || root != nil
		if root != nil {
			v, _ := r.Value(root, t, "")
			fileMap, _ = v.(map[string]any)
		}
	}
	problems := r.Problems()

	l := &layers{
		v:       viper.NewWithOptions(viper.KeyDelimiter(keyDelim)),
		file:    opts.File,
		sources: map[string]string{},
	}
	if fileMap != nil {
		// MergeConfigMap only lower-cases (in place, hence the copy) and
		// merges; it cannot fail.
		_ = l.v.MergeConfigMap(plainCopy(fileMap).(map[string]any))
	}
	leaves := leavesOf(t)
	if opts.EnvPrefix != "" {
		l.env(opts.EnvPrefix, leaves)
	}
	if opts.Flags != nil {
		l.flags(opts.Flags, opts.FlagKeys, leaves)
	}
	problems = append(problems, l.problems...)

	if !parsed || r.Stopped() {
		// Nothing, or only part of the file, was read: decoding and
		// validating would only add noise.
		return &Error{Problems: problems}
	}

	clearReplaced(rv.Elem(), "", fileMap, l.sources)
	err := l.v.UnmarshalExact(out,
		viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
			mapstructure.TextUnmarshallerHookFunc(),
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)))
	if err != nil {
		problems = append(problems, Problem{File: opts.File, Msg: "cannot decode: " + err.Error()})
		return &Error{Problems: problems}
	}
	restoreKeys(rv.Elem(), fileMap)

	if val, ok := out.(interface{ Validate() error }); ok {
		if err := val.Validate(); err != nil {
			problems = append(problems, validateProblems(err, opts.File, r, l.sources, problems)...)
		}
	}
	if len(problems) > 0 {
		return &Error{Problems: problems}
	}
	return nil
}

// layers binds the environment and flags over the file in one viper
// instance, remembering which keys each set.
type layers struct {
	v        *viper.Viper
	file     string
	sources  map[string]string // lower-cased key -> "env X" or "flag --x"
	problems []Problem
}

func (l *layers) set(lf leaf, src string) {
	l.sources[strings.ToLower(lf.path())] = src
}

func (l *layers) problem(key, src, msg string) {
	l.problems = append(l.problems, Problem{File: l.file, Key: key, Msg: msg, Source: src})
}

// env binds PREFIX_KEY for every leaf whose variable is set and valid.
// Binding explicitly, rather than viper's AutomaticEnv, keeps an invalid
// variable out of the decode so it is reported once, by name.
func (l *layers) env(prefix string, leaves []leaf) {
	for _, lf := range leaves {
		name := envName(prefix, lf.segs)
		val, ok := os.LookupEnv(name)
		if !ok || val == "" {
			continue
		}
		src := "env " + name
		if msg := yamlpos.CheckText(lf.typ, val); msg != "" {
			l.problem(lf.path(), src, msg)
			continue
		}
		_ = l.v.BindEnv(strings.Join(lf.segs, keyDelim), name)
		l.set(lf, src)
	}
}

// flags binds the changed flags listed in keys, and reports entries of
// keys that name no flag or no leaf key whether or not they were changed.
func (l *layers) flags(fs *pflag.FlagSet, keys map[string]string, leaves []leaf) {
	names := make([]string, 0, len(keys))
	for name := range keys {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		key, src := keys[name], "flag --"+name
		f := fs.Lookup(name)
		if f == nil {
			l.problem(key, src, "FlagKeys names a flag that is not defined")
			continue
		}
		i := slices.IndexFunc(leaves, func(lf leaf) bool { return strings.EqualFold(lf.path(), key) })
		if i < 0 {
			l.problem(key, src, "FlagKeys maps the flag to a key that is not a settable config key")
			continue
		}
		lf := leaves[i]
		if !f.Changed {
			continue
		}
		// Slice flags render as "[a,b]"; pflag has already parsed them.
		if lf.typ.Kind() != reflect.Slice {
			if msg := yamlpos.CheckText(lf.typ, f.Value.String()); msg != "" {
				l.problem(lf.path(), src, msg)
				continue
			}
		}
		_ = l.v.BindPFlag(strings.Join(lf.segs, keyDelim), f)
		l.set(lf, src)
	}
}

func readProblem(file string, err error) Problem {
	p := Problem{File: file, Source: "file"}
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.Msg = "config file does not exist"
	case errors.As(err, &pe):
		p.Msg = "cannot read config file: " + pe.Err.Error()
	default:
		p.Msg = "cannot read config file: " + err.Error()
	}
	return p
}

// envName is the variable that sets the key at segs: PREFIX_A_B, upper-case,
// with dashes as underscores.
func envName(prefix string, segs []string) string {
	name := strings.ToUpper(prefix + "_" + strings.Join(segs, "_"))
	return strings.ReplaceAll(name, "-", "_")
}

// clearReplaced zeroes the lists and maps in v that a layer sets (file,
// the file's plain value at this level, or sources), so that the layer's
// value replaces the default instead of merging into it (and never writes
// into a default's backing array).
func clearReplaced(v reflect.Value, path string, file map[string]any, sources map[string]string) {
	for _, f := range yamlpos.Fields(v.Type()) {
		p := yamlpos.Join(path, f.Name)
		fileVal, inFile := file[f.Name]
		if _, inLayer := sources[strings.ToLower(p)]; !inFile && !inLayer {
			continue
		}
		fv, err := v.FieldByIndexErr(f.Index)
		if err != nil || yamlpos.IsText(fv.Type()) {
			continue
		}
		sub, _ := fileVal.(map[string]any)
		switch fv.Kind() {
		case reflect.Slice, reflect.Map, reflect.Array:
			fv.SetZero()
		case reflect.Struct:
			clearReplaced(fv, p, sub, sources)
		case reflect.Pointer:
			if !fv.IsNil() && fv.Elem().Kind() == reflect.Struct && !yamlpos.IsText(fv.Elem().Type()) {
				clearReplaced(fv.Elem(), p, sub, sources)
			}
		}
	}
}

// plainCopy copies a plain value deeply.
func plainCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = plainCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = plainCopy(e)
		}
		return l
	}
	return v
}

// restoreKeys puts back the case of map keys as the file wrote them, which
// viper lower-cases, walking the decoded value v alongside the file's plain
// value. The environment and flags set no map keys.
func restoreKeys(v reflect.Value, file any) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if file == nil || yamlpos.IsText(v.Type()) {
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		m, _ := file.(map[string]any)
		for _, f := range yamlpos.Fields(v.Type()) {
			if fv, err := v.FieldByIndexErr(f.Index); err == nil && m[f.Name] != nil {
				restoreKeys(fv, m[f.Name])
			}
		}
	case reflect.Slice, reflect.Array:
		l, _ := file.([]any)
		for i := 0; i < len(l) && i < v.Len(); i++ {
			restoreKeys(v.Index(i), l[i])
		}
	case reflect.Map:
		m, _ := file.(map[string]any)
		if v.Type().Key().Kind() != reflect.String || v.IsNil() {
			return
		}
		kt, et := v.Type().Key(), v.Type().Elem()
		for name, sub := range m {
			key := reflect.ValueOf(name).Convert(kt)
			if lower := reflect.ValueOf(strings.ToLower(name)).Convert(kt); !v.MapIndex(key).IsValid() {
				if lv := v.MapIndex(lower); lv.IsValid() {
					v.SetMapIndex(key, lv)
					v.SetMapIndex(lower, reflect.Value{})
				}
			}
			ev := v.MapIndex(key)
			if !ev.IsValid() {
				continue
			}
			cp := reflect.New(et).Elem()
			cp.Set(ev)
			restoreKeys(cp, sub)
			v.SetMapIndex(key, cp)
		}
	}
}

// validateProblems turns what Validate returned into problems, positioned
// at the key in the file or attributed to the variable or flag that set it.
// A FieldError under a key that already has a problem is dropped.
func validateProblems(err error, file string, r *yamlpos.Reader, sources map[string]string, earlier []Problem) []Problem {
	var out []Problem
	add := func(key, msg string) {
		key = normalizeKey(key)
		lkey := strings.ToLower(key)
		for _, p := range earlier {
			lp := strings.ToLower(p.Key)
			if key != "" && p.Key != "" && (lkey == lp || strings.HasPrefix(lkey, lp+".")) {
				return
			}
		}
		p := Problem{File: file, Key: key, Msg: msg}
		if src, ok := sources[lkey]; ok {
			p.Source = src
		} else if n, ok := r.At(key); ok && key != "" {
			p.Line, p.Column, p.Source = n.Line, n.Column, "file"
		}
		out = append(out, p)
	}
	var walk func(error)
	walk = func(err error) {
		var fe *FieldError
		switch e := err.(type) {
		case *FieldError:
			add(e.Key, e.Msg)
			return
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				if inner != nil {
					walk(inner)
				}
			}
			return
		}
		if inner := errors.Unwrap(err); inner != nil && errors.As(inner, &fe) {
			walk(inner)
			return
		}
		add("", err.Error())
	}
	walk(err)
	return out
}

// normalizeKey turns "services[2].name" into "services.2.name".
func normalizeKey(key string) string {
	key = strings.ReplaceAll(key, "[", ".")
	key = strings.ReplaceAll(key, "]", "")
	return strings.TrimPrefix(key, ".")
}
