package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/internal/configfile"
	"github.com/straitmesh/strait/internal/otlptrace"
	"github.com/straitmesh/strait/lab"
	"github.com/straitmesh/strait/sovereignty"
)

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "strait",
		Short:         "Strait federates service meshes across clusters, clouds and regions",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{fmt.Errorf("%w\nrun '%s --help' for usage", err, c.CommandPath())}
	})
	root.AddCommand(newGatewayCmd(), newDevCmd(), newStatusCmd(), newCACmd(), newKeysCmd(), newPolicyCmd(), newStateCmd(), newProbeCmd(), newDrillCmd(), newVersionCmd())
	return root
}

func newGatewayCmd() *cobra.Command {
	var file string
	var check bool
	cmd := &cobra.Command{
		Use:   "gateway --config FILE",
		Short: "Run one gateway",
		Long: `Run one gateway. Configuration comes from the YAML file, then STRAIT_*
environment variables (STRAIT_LISTEN_ADMIN for listen.admin), then flags.
With --check the configuration (and the residency policy it names) is only
validated. Config and policy errors exit with code 2. SIGHUP reloads the
residency policy; an invalid one is refused and the last good one stays.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := gateway.DefaultConfig()
			if err := configfile.Load(configfile.Options{
				File: file, EnvPrefix: "STRAIT", Flags: cmd.Flags(),
				FlagKeys: map[string]string{"cluster": "cluster", "region": "region", "log-level": "log.level", "insecure-gossip": "gossip.insecure"},
			}, &cfg); err != nil {
				return err
			}
			// Traces: off unless the OTEL_* variables ask (docs/tracing.md).
			ts, err := otlptrace.FromEnv(os.Getenv)
			if err != nil {
				return err
			}
			if check {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: configuration is valid (cluster %s, region %s)\n", displayName(file), cfg.Cluster, cfg.Region)
				if ts.On {
					fmt.Fprintf(cmd.OutOrStdout(), "traces: exported over OTLP (%s) as the OTEL_* variables say\n", ts.Protocol)
				}
				if path, n, err := cfg.CheckServicesFile(); err != nil {
					return err
				} else if path != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: valid services file (%d services)\n", path, n)
				}
				if cfg.Residency.Policy != "" {
					e, err := sovereignty.LoadFile(cfg.Residency.Policy)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s: valid %s\n", cfg.Residency.Policy, e.Summary())
				}
				return nil
			}
			logger := newLogger(cmd.ErrOrStderr(), cfg.Log.Level, cfg.Log.Format)
			// client-go, under Kubernetes discovery, logs through klog:
			// into the gateway's log too.
			klog.SetSlogLogger(logger.With("component", "client-go"))
			// Signals are caught before the gateway starts: once its admin
			// API answers, a SIGHUP must reload, not kill it.
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			tp, stopTracing, err := otlptrace.Start(ctx, ts, otlptrace.Gateway{Cluster: cfg.Cluster, Region: cfg.Region, Version: version})
			if err != nil {
				return err
			}
			defer func() {
				fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := stopTracing(fctx); err != nil {
					logger.Warn("flush traces", "err", err)
				}
			}()
			if ts.On {
				logger.Info("tracing on: spans go to the OTLP collector the OTEL_* variables name", "protocol", ts.Protocol)
			}
			g, err := gateway.Start(cfg, gateway.Options{Logger: logger, Version: version, TracerProvider: tp})
			if err != nil {
				return err
			}
			go func() {
				for range hup {
					if err := g.ReloadPolicy(); err != nil {
						logger.Error("SIGHUP: residency policy not reloaded; the last good one stays in force", "err", err)
						continue
					}
					_, v := g.Policy()
					logger.Info("SIGHUP: residency policy reloaded", "version", v)
				}
			}()
			<-ctx.Done()
			logger.Info("signal received, draining", "deadline", cfg.Timeouts.Drain)
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Timeouts.Drain+5*time.Second)
			defer cancel()
			return g.Shutdown(sctx)
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "gateway configuration file (YAML)")
	cmd.Flags().BoolVar(&check, "check", false, "validate the configuration and exit")
	cmd.Flags().String("cluster", "", "override cluster")
	cmd.Flags().String("region", "", "override region")
	cmd.Flags().String("log-level", "", "override log.level (debug, info, warn, error)")
	cmd.Flags().Bool("insecure-gossip", false, "run gossip unencrypted (gossip.insecure; development only)")
	return cmd
}

func displayName(file string) string {
	if file == "" {
		return "(environment and flags)"
	}
	return file
}

func newDevCmd() *cobra.Command {
	var (
		duration   time.Duration
		infoFile   string
		ephemeral  bool
		logLevel   string
		policyFile string
		auditDir   string
		certLife   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole federation on this machine: 4 clusters in 3 regions with demo services",
		Long: `Run a whole local federation on loopback: clusters eu-west-1 and eu-west-2
(region eu-west), eu-central-1 (eu-central) and us-east-1 (us-east), one gateway
each, demo services on port 8080, an ephemeral federation CA (the voters hold
its intermediate; eu-west-2 enrols with a join token; certificates live
--cert-lifetime and renew at two thirds of it), and the residency policy of
deploy/examples/residency.yaml (--policy for another). Cluster N binds 127.0.N.0/24
with the well-known ports and answers DNS for its imports' clusterset.local names
on 127.0.N.1:15053 (each imported service at an address of 127.77.N.0/24);
--ephemeral uses free ports on 127.0.0.1 instead, without DNS.
Runs until interrupted or for --duration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := new(slog.LevelVar)
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return &usageError{fmt.Errorf("--log-level: %w", err)}
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if certLife < 3*time.Second {
				return &usageError{fmt.Errorf("--cert-lifetime: want at least 3s, found %s", certLife)}
			}
			spec := lab.Spec{Logger: logger, Version: version, AuditDir: auditDir, CertLifetime: certLife}
			if policyFile != "" {
				if _, err := sovereignty.LoadFile(policyFile); err != nil {
					return err
				}
				var err error
				if spec.Policy, err = os.ReadFile(policyFile); err != nil {
					return fmt.Errorf("read %s: %w", policyFile, err)
				}
				spec.PolicyName = policyFile
			}
			d, err := lab.StartDev(sctx, lab.DevOptions{Ephemeral: ephemeral, Spec: spec})
			if err != nil {
				return fmt.Errorf("start dev federation: %w", err)
			}
			defer d.Close()
			if duration > 0 { // counted once the federation is up
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			info := d.Info()
			if infoFile != "" {
				if err := lab.WriteInfo(infoFile, info); err != nil {
					return err
				}
			}
			lab.PrintTour(cmd.OutOrStdout(), info, os.Args[0])
			if infoFile != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "\nAddresses as JSON: %s\n", infoFile)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\nRunning. Press Ctrl-C to stop.")
			<-ctx.Done()
			fmt.Fprintln(cmd.OutOrStdout(), "Stopping the federation...")
			return nil
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop this long after the federation is up (0: until interrupted)")
	cmd.Flags().StringVar(&infoFile, "info", "", "write clusters and their addresses as JSON to this file")
	cmd.Flags().BoolVar(&ephemeral, "ephemeral", false, "bind 127.0.0.1 with free ports instead of 127.0.N.x with the well-known ports")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "gateway log level (debug, info, warn, error)")
	cmd.Flags().StringVar(&policyFile, "policy", "", "residency policy every gateway enforces (default: deploy/examples/residency.yaml, built in)")
	cmd.Flags().StringVar(&auditDir, "audit-dir", "", "write each gateway's residency audit trail to DIR/<cluster>.jsonl")
	cmd.Flags().DurationVar(&certLife, "cert-lifetime", 90*time.Second, "lifetime of the gateways' certificates (renewed at two thirds of it; see strait status)")
	return cmd
}

func newStatusCmd() *cobra.Command {
	var (
		af     adminFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a gateway's members, clusters and exported services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return &usageError{fmt.Errorf("-o: want table or json, found %q", output)}
			}
			c, err := af.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return st.WriteTable(cmd.OutOrStdout())
		},
	}
	af.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "strait %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // validated with the config
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
