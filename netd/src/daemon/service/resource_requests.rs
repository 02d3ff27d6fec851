//! The declarative API (`PUT /v1/networks/NAME`, zos's `ApplyNetResource`):
//! what netd holds of the network is read, the pure `crate::resource::plan`
//! says the steps, and each step runs as the request of its own would
//! (`network create`, `guest add`/`rm`, `port add`/`rm`), each all or
//! nothing. A step refused stops the rest: the error names the steps done
//! before it, and the same resource applied again goes on from there.

use std::collections::BTreeMap;

use super::Shared;
use crate::{
    daemon::{
        error::{ServiceError, ServiceResult},
        requests::{AddGuest, CreateNetwork, ResourceView},
    },
    resource::{Current, NetworkResource, Step},
};

impl Shared {
    /// Makes network `name` what `desired` says.
    pub async fn apply_resource(
        &self,
        name: String,
        desired: NetworkResource,
    ) -> ServiceResult<ResourceView> {
        crate::model::validate_name(crate::model::NameKind::Network, &name)?;
        let (current, default_subnet) = {
            let svc = self.lock().await;
            let current = svc.state.networks.get(&name).map(|net| {
                let view = svc.network_view(net);
                Current {
                    subnet: net.subnet,
                    routable: net.routable,
                    internal: net.internal,
                    mtu: net.mtu,
                    span: net.span.is_some(),
                    guests: view
                        .guests
                        .iter()
                        .filter(|g| g.connected_from.is_none())
                        .map(|g| {
                            let ip = g.ip.split('/').next().unwrap_or_default().to_owned();
                            (g.name.clone(), (ip, g.mac.clone()))
                        })
                        .collect(),
                    ports: net
                        .guests
                        .values()
                        .flat_map(|g| g.ports.iter().map(|p| (g.name.clone(), p.to_string())))
                        .collect(),
                }
            });
            (current, svc.topology.config.default_subnet)
        };
        let steps = crate::resource::plan(&desired, current.as_ref(), default_subnet)
            .map_err(ServiceError::Invalid)?;
        let mut done: Vec<String> = Vec::new();
        for step in &steps {
            if let Err(err) = self.run_step(&name, &desired, step).await {
                let before = if done.is_empty() {
                    "nothing changed before it".to_owned()
                } else {
                    format!("done before it: {}", done.join(", "))
                };
                let message = format!("{step}: refused: {err} ({before})");
                return Err(match err {
                    ServiceError::Internal(err) => ServiceError::Internal(err.context(message)),
                    ServiceError::NotFound(_) => ServiceError::NotFound(message),
                    ServiceError::Forbidden(_) => ServiceError::Forbidden(message),
                    ServiceError::Conflict(_) => ServiceError::Conflict(message),
                    ServiceError::Unavailable(_) => ServiceError::Unavailable(message),
                    ServiceError::Invalid(_) => ServiceError::Invalid(message),
                });
            }
            done.push(step.to_string());
        }
        let svc = self.lock().await;
        let network = svc.network_view(svc.network(&name)?);
        let namespaces: BTreeMap<String, String> = network
            .guests
            .iter()
            .filter(|g| g.connected_from.is_none())
            .map(|g| {
                let ns = g
                    .netns
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                (g.name.clone(), ns)
            })
            .collect();
        Ok(ResourceView {
            name: name.clone(),
            changed: !done.is_empty(),
            steps: done,
            namespace: network.netns.clone(),
            namespaces,
            network,
        })
    }

    async fn run_step(
        &self,
        name: &str,
        desired: &NetworkResource,
        step: &Step,
    ) -> ServiceResult<()> {
        let name = name.to_owned();
        match step.clone() {
            Step::CreateNetwork => {
                let request = CreateNetwork {
                    name: name.clone(),
                    subnet: desired.subnet.clone(),
                    internal: desired.internal,
                    mtu: desired.mtu,
                    span: desired.span,
                };
                self.change(name, |svc, _| async move {
                    svc.lock().await.create_network(request).await
                })
                .await
                .map(drop)
            }
            Step::AddGuest(guest) => {
                let request = AddGuest {
                    name: guest.name,
                    ip: guest.ip,
                    netns: None,
                    labels: Default::default(),
                    mac: guest.mac,
                };
                self.add_guest(name, request).await.map(drop)
            }
            Step::RemoveGuest { guest } => {
                self.change(name, |svc, network| async move {
                    svc.lock().await.remove_guest(&network, &guest).await
                })
                .await
            }
            Step::AddPort { guest, spec } => self
                .change(name, |svc, network| async move {
                    svc.lock().await.publish_port(&network, &guest, &spec).await
                })
                .await
                .map(drop),
            Step::RemovePort { guest, spec } => {
                self.change(name, |svc, network| async move {
                    svc.lock().await.remove_port(&network, &guest, &spec)
                })
                .await
            }
        }
    }
}
