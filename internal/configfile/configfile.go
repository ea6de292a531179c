package configfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
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

// Problem is one positioned problem.
type Problem struct {
	File   string // the config file being loaded; "" when there is none
	Line   int    // 1-based; 0 when unknown or not from the file
	Column int    // 1-based; 0 when unknown
	Key    string // dotted key, "" when the problem is not about one key
	Msg    string // what is wrong: what was expected and what was found
	// Source says which layer the value came from: "file", "env STRAIT_X",
	// "flag --x", or "" for a default or a missing value.
	Source string
}

// String renders the problem for people, e.g.
//
//	gw.yaml:12:3: key listen.dta: unknown key (did you mean "data"?)
//	gw.yaml: key cluster: required value missing
//	env STRAIT_LISTEN_PORT: key listen.port: expected an integer, found "abc"
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case strings.HasPrefix(p.Source, "env ") || strings.HasPrefix(p.Source, "flag "):
		b.WriteString(p.Source)
	case p.File != "":
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
			if p.Column > 0 {
				b.WriteString(":" + strconv.Itoa(p.Column))
			}
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString("key " + p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error holds every problem Load found.
type Error struct {
	Problems []Problem
}

// maxRendered caps the problems Error renders; Problems holds them all.
const maxRendered = 100

// Error returns a header naming the file, then one problem per line, at
// most maxRendered of them.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid config")
	for _, p := range e.Problems {
		if p.File != "" {
			b.WriteString(" " + p.File)
			break
		}
	}
	s := "s"
	if len(e.Problems) == 1 {
		s = ""
	}
	fmt.Fprintf(&b, " (%d problem%s):", len(e.Problems), s)
	for i, p := range e.Problems {
		if i == maxRendered {
			fmt.Fprintf(&b, "\n  ... and %d more", len(e.Problems)-i)
			break
		}
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

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
}

// keyDelim separates key segments inside viper. It is not "." so that map
// keys such as "app.kubernetes.io/name" stay whole; the walker rejects keys
// that contain it.
const keyDelim = "\x00"

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

	w := newWalker(opts.File)
	var doc *yaml.Node
	parsed := true
	if opts.File != "" {
		data, err := os.ReadFile(opts.File)
		if err != nil {
			return &Error{Problems: []Problem{readProblem(opts.File, err)}}
		}
		var probs []Problem
		doc, probs = parse(opts.File, data)
		if doc == nil && len(probs) > 0 {
			parsed = false
		}
		w.problems = append(w.problems, probs...)
	}
	var fileMap map[string]any
	if doc != nil {
		fileMap = w.document(doc, t)
	}
	problems := slices.Clone(w.problems) // restore may report again into w.problems

	l := &layers{
		v:       viper.NewWithOptions(viper.KeyDelimiter(keyDelim)),
		file:    opts.File,
		present: w.present,
		sources: map[string]string{},
	}
	if fileMap != nil {
		// MergeConfigMap only lower-cases and merges; it cannot fail.
		_ = l.v.MergeConfigMap(fileMap)
	}
	leaves := leavesOf(t)
	if opts.EnvPrefix != "" {
		l.env(opts.EnvPrefix, leaves)
	}
	if opts.Flags != nil {
		l.flags(opts.Flags, opts.FlagKeys, leaves)
	}
	problems = append(problems, l.problems...)

	if !parsed || w.tooLarge {
		// Nothing, or only part of the file, was read: decoding and
		// validating would only add noise.
		return &Error{Problems: problems}
	}

	clearReplaced(rv.Elem(), "", l.present)
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
	if doc != nil && len(doc.Content) > 0 {
		w.budget = nodeBudget
		w.restore(doc.Content[0], rv.Elem())
	}

	if val, ok := out.(interface{ Validate() error }); ok {
		if err := val.Validate(); err != nil {
			problems = append(problems, validateProblems(err, opts.File, w, l.sources, problems)...)
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
	present  map[string]bool   // lower-cased keys some layer sets
	sources  map[string]string // lower-cased key -> "env X" or "flag --x"
	problems []Problem
}

func (l *layers) set(lf leaf, src string) {
	key := strings.ToLower(lf.path())
	l.present[key] = true
	l.sources[key] = src
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
		if msg := checkText(lf.typ, val); msg != "" {
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
			if msg := checkText(lf.typ, f.Value.String()); msg != "" {
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

// clearReplaced zeroes the lists and maps in v that a layer sets, so that
// the layer's value replaces the default instead of merging into it (and
// never writes into a default's backing array).
func clearReplaced(v reflect.Value, path string, present map[string]bool) {
	for _, f := range fieldsOf(v.Type()) {
		p := join(path, f.name)
		if !present[strings.ToLower(p)] {
			continue
		}
		fv, err := v.FieldByIndexErr(f.index)
		if err != nil || isText(fv.Type()) {
			continue
		}
		switch fv.Kind() {
		case reflect.Slice, reflect.Map, reflect.Array:
			fv.SetZero()
		case reflect.Struct:
			clearReplaced(fv, p, present)
		case reflect.Pointer:
			if !fv.IsNil() && fv.Elem().Kind() == reflect.Struct && !isText(fv.Elem().Type()) {
				clearReplaced(fv.Elem(), p, present)
			}
		}
	}
}

// validateProblems turns what Validate returned into problems, positioned
// at the key in the file or attributed to the variable or flag that set it.
// A FieldError under a key that already has a problem is dropped.
func validateProblems(err error, file string, w *walker, sources map[string]string, earlier []Problem) []Problem {
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
		} else if n, ok := w.pos[lkey]; ok && key != "" {
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
