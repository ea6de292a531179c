package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func newProbeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Call a service through a gateway and say which cluster and region served it",
	}
	cmd.AddCommand(newProbeGRPCCmd())
	return cmd
}

func newProbeGRPCCmd() *cobra.Command {
	var service string
	var headers []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "grpc HOST:PORT [--service NAME] [--header K=V ...] [--timeout 5s]",
		Short: "A gRPC health check (grpc.health.v1.Health/Check) in plaintext (h2c), e.g. through an import port",
		Long: `Call grpc.health.v1.Health/Check on HOST:PORT over plaintext HTTP/2 (h2c),
with each --header as request metadata, and print the serving status and, when
the call went through a Strait gateway, the cluster and region that served it
(the x-strait-cluster and x-strait-region response metadata):

  SERVING  served by eu-central-1 (eu-central)

Exits 0 when the status is SERVING, 1 on any other status or a gRPC error
(printed as its code and message, e.g. a residency refusal as PermissionDenied),
2 on bad arguments.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &usageError{fmt.Errorf("want one HOST:PORT, found %d arguments", len(args))}
			}
			if _, _, err := net.SplitHostPort(args[0]); err != nil {
				return &usageError{fmt.Errorf("address %q: want HOST:PORT: %w", args[0], err)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return &usageError{fmt.Errorf("--timeout: want a positive duration, found %s", timeout)}
			}
			h, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			md := metadata.MD{}
			for k, vs := range h {
				md.Append(strings.ToLower(k), vs...)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := probeGRPCHealth(metadata.NewOutgoingContext(ctx, md), args[0], service)
			if err != nil {
				return err
			}
			line := res.Status.String()
			if res.Cluster != "" {
				line += fmt.Sprintf("  served by %s (%s)", res.Cluster, res.Region)
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			if res.Status != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("health of %q at %s: %s", service, args[0], res.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&service, "service", "", `service name in the health check request ("" asks about the server as a whole)`)
	cmd.Flags().StringArrayVar(&headers, "header", nil, "request metadata K=V, e.g. x-data-residency=eu (repeatable)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "deadline of the whole call, connecting included")
	return cmd
}

// grpcHealth is the answer of one health check.
type grpcHealth struct {
	Status healthpb.HealthCheckResponse_ServingStatus
	// Cluster and Region are the x-strait-cluster and x-strait-region
	// response metadata a gateway adds; empty without a gateway.
	Cluster, Region string
}

// probeGRPCHealth calls grpc.health.v1.Health/Check for service on addr
// in plaintext, with the metadata of ctx. A call that ends with a gRPC
// status is returned as a grpcError.
func probeGRPCHealth(ctx context.Context, addr, service string) (grpcHealth, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return grpcHealth{}, &usageError{fmt.Errorf("address %q: %w", addr, err)}
	}
	defer conn.Close()
	var hdr metadata.MD
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service}, grpc.Header(&hdr))
	if err != nil {
		return grpcHealth{}, grpcError{status.Convert(err)}
	}
	return grpcHealth{Status: resp.GetStatus(), Cluster: firstValue(hdr, "x-strait-cluster"), Region: firstValue(hdr, "x-strait-region")}, nil
}

func firstValue(md metadata.MD, key string) string {
	if vs := md.Get(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// grpcError prints a gRPC status as its code and message:
// "PermissionDenied: residency: ...".
type grpcError struct{ s *status.Status }

func (e grpcError) Error() string { return fmt.Sprintf("%s: %s", e.s.Code(), e.s.Message()) }

// GRPCStatus lets status.FromError see the status.
func (e grpcError) GRPCStatus() *status.Status { return e.s }
