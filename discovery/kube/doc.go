// Package kube is the Kubernetes discovery source: local services come
// from Services and EndpointSlices, exported through the Multi-Cluster
// Services API (sigs.k8s.io/mcs-api, group multicluster.x-k8s.io), and
// the gateway's imports are written back as ServiceImports.
//
// What a Source guarantees:
//
//   - Only a Service with a ServiceExport of the same namespace and name
//     is exported. Its ports are the Service's TCP ports (at most
//     MaxPorts); a port's protocol is its appProtocol (http; http2, h2c
//     or kubernetes.io/h2c; grpc), anything else tcp. Its endpoints are
//     the first address of every ready endpoint of its EndpointSlices,
//     or, when none is ready, of every serving endpoint that is
//     terminating; each port's target is the number the slices give the
//     port's name. Zones come from the slices too. Its residency labels
//     are the ServiceExport's LabelsAnnotation.
//   - Every ServiceExport carries the MCS API's Valid condition (reasons
//     Valid, NoService, InvalidServiceType, and Strait's InvalidLabels,
//     NoTCPPorts, TooManyPorts) and, when valid, Conflict (PortConflict
//     when another cluster declares the service's ports differently, as
//     the gateway reports through ObservePorts; NoConflicts otherwise).
//     Conflicting ports are reported, never merged: each cluster is
//     reached on the ports it declares. An export that is not valid is
//     not exported; a problem is one log line when it appears and a
//     gauge (strait_discovery_kube_export_problems) while it lasts.
//   - An export whose residency labels cannot be read is not exported
//     at all: no fault relaxes residency.
//   - The service list is rebuilt from client-go informers' caches (no
//     polling) once the API has been quiet for Options.Debounce, and
//     MaxDelay after the first change at the latest: a change reaches
//     Changes within a second (TestServicesFollowTheAPI).
//   - Static stability: the caches outlive the API server. While it does
//     not answer, Services keeps the last good list,
//     strait_discovery_kube_api_reachable is 0 and one log line says so;
//     when it answers again the informers resume and discovery follows
//     (TestAPIServerRestartKeepsCatalog).
//   - SetImports keeps one ServiceImport (type ClusterSetIP, the
//     imports' ports) per imported service in its namespace, labelled
//     ManagedByLabel=ManagedBy; only such owned objects are ever updated
//     or deleted, and one of another owner is left alone
//     (TestServiceImports).
//   - Start checks every verb of Permissions with
//     SelfSubjectAccessReviews and refuses to run, naming each missing
//     one; TestRBAC proves the documented verbs are enough, and that
//     each is needed, against an API server with RBAC authorization.
//
// Writes (conditions, ServiceImports) go through one rate-limited work
// queue, retried with backoff while the API server is away. Close stops
// the informers, the rebuild loop and the writer and waits for them
// (TestCloseStopsEverything).
package kube
