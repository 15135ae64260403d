//! The requests of clients and operators: registering as a client, sharing system data,
//! reading what the registry knows of clients, operators' actions and the audit log, and a
//! child registry's hello and reports to its parent, and its own mirror's state.

use super::{ClientError, RegistryClient};
use courier_protocol::limits::{MAX_AUDIT_PAGE, MAX_CLIENT_PAGE};
use courier_protocol::{
    AdminAction, Approval, AuditEntry, ChildInfo, ChildReport, ChildWelcome, ClientInfo,
    ClientProfile, Directive, Interest, InterestGrant, InterestId, MirrorRule, MirrorStatus,
    Request, Response, RolloutStatus, SignedOperatorStatement, SystemData, UndoReport, UsageQuery,
    UsageRow, VendorKey,
};

impl RegistryClient {
    /// Registers the connection's key (see [`RegistryClient::authenticate`]) as a client
    /// with `profile`.
    pub async fn register_client(&self, profile: ClientProfile) -> Result<(), ClientError> {
        let resp = self.request(&Request::RegisterClient(profile)).await?;
        expect!(resp, Response::ClientRegistered => (), "expected ClientRegistered")
    }

    /// Shares system data as the connection's (registered) client.
    pub async fn share_system_data(&self, data: SystemData) -> Result<(), ClientError> {
        let resp = self.request(&Request::ShareSystemData(data)).await?;
        expect!(resp, Response::SystemDataStored => (), "expected SystemDataStored")
    }

    /// What the registry knows of client `key` (the client itself, or an operator).
    pub async fn client(&self, key: VendorKey) -> Result<ClientInfo, ClientError> {
        let resp = self.request(&Request::Client { key }).await?;
        expect!(resp, Response::Client(c) => c, "expected Client")
    }

    /// Every registered client, sorted by key, read a page at a time (operators only).
    pub async fn clients(&self) -> Result<Vec<ClientInfo>, ClientError> {
        let mut out = Vec::new();
        let mut after: Option<VendorKey> = None;
        loop {
            let req = Request::Clients {
                after,
                limit: MAX_CLIENT_PAGE,
            };
            let page =
                expect!(self.request(&req).await?, Response::Clients(p) => p, "expected Clients")?;
            out.extend(page.clients);
            match page.next {
                Some(next) if after.is_none_or(|a| next > a) => after = Some(next),
                Some(_) => {
                    return Err(ClientError::Unexpected(
                        "client page cursor does not move on",
                    ));
                }
                None => return Ok(out),
            }
        }
    }

    /// Does an operator's action (operators only); answers its audit entry.
    pub async fn admin(&self, action: AdminAction) -> Result<AuditEntry, ClientError> {
        let resp = self.request(&Request::Admin(action)).await?;
        expect!(resp, Response::AdminDone(e) => e, "expected AdminDone")
    }

    /// The audit log from entry `from_seq` on, oldest first (operators only).
    pub async fn audit(&self, from_seq: u64) -> Result<Vec<AuditEntry>, ClientError> {
        let req = Request::Audit {
            from_seq,
            limit: MAX_AUDIT_PAGE,
        };
        let resp = self.request(&req).await?;
        expect!(resp, Response::Audit(a) => a, "expected Audit")
    }

    /// The operators' signed revocations of `keys`. Nothing here is verified: the caller
    /// checks each against the operator keys it trusts.
    pub async fn operator_statements(
        &self,
        keys: Vec<VendorKey>,
    ) -> Result<Vec<SignedOperatorStatement>, ClientError> {
        let resp = self.request(&Request::OperatorStatements { keys }).await?;
        expect!(resp, Response::OperatorStatements(s) => s, "expected OperatorStatements")
    }

    /// Usage summed per client, service or both (operators only).
    pub async fn usage(&self, query: UsageQuery) -> Result<Vec<UsageRow>, ClientError> {
        let resp = self.request(&Request::Usage(query)).await?;
        expect!(resp, Response::Usage(u) => u, "expected Usage")
    }

    /// Registers interest in a template, under a lease (an authenticated connection).
    pub async fn register_interest(
        &self,
        interest: Interest,
    ) -> Result<InterestGrant, ClientError> {
        let resp = self.request(&Request::RegisterInterest(interest)).await?;
        expect!(resp, Response::InterestGranted(g) => g, "expected InterestGranted")
    }

    /// Renews a registration of interest.
    pub async fn renew_interest(
        &self,
        id: InterestId,
        ttl_ms: u64,
    ) -> Result<InterestGrant, ClientError> {
        let resp = self.request(&Request::RenewInterest { id, ttl_ms }).await?;
        expect!(resp, Response::InterestGranted(g) => g, "expected InterestGranted")
    }

    /// Ends a registration of interest.
    pub async fn cancel_interest(&self, id: InterestId) -> Result<(), ClientError> {
        let resp = self.request(&Request::CancelInterest { id }).await?;
        expect!(resp, Response::InterestCancelled => (), "expected InterestCancelled")
    }

    /// Asks to follow this registry as a child registry, authenticated with the child's
    /// key: the name the parent's operator gave it and the parent's place in the
    /// hierarchy, or `Forbidden` (not allowed, or a loop).
    pub async fn child_hello(&self) -> Result<ChildWelcome, ClientError> {
        let resp = self.request(&Request::ChildHello).await?;
        expect!(resp, Response::ChildWelcome(w) => w, "expected ChildWelcome")
    }

    /// The child registries the operator allowed (an operator's connection).
    pub async fn children(&self) -> Result<Vec<ChildInfo>, ClientError> {
        let resp = self.request(&Request::Children).await?;
        expect!(resp, Response::Children(c) => c, "expected Children")
    }

    /// Sends a child registry's report to its parent (after [`RegistryClient::child_hello`]).
    pub async fn child_report(&self, report: ChildReport) -> Result<(), ClientError> {
        let resp = self.request(&Request::ChildReport(report)).await?;
        expect!(resp, Response::ChildReported => (), "expected ChildReported")
    }

    /// Asks the allowed child `key` for a report now (an operator's connection); the child
    /// hears it at its next hello.
    pub async fn ask_child_report(&self, key: VendorKey) -> Result<(), ClientError> {
        let resp = self.request(&Request::AskChildReport { key }).await?;
        expect!(resp, Response::ChildReportAsked => (), "expected ChildReportAsked")
    }

    /// This registry's copy of its parent, and its rules (an operator's connection).
    pub async fn mirror_status(&self) -> Result<(MirrorStatus, Vec<MirrorRule>), ClientError> {
        let resp = self.request(&Request::MirrorStatus).await?;
        expect!(resp, Response::MirrorStatus(s, r) => (s, r), "expected MirrorStatus")
    }

    /// This registry's approvals, pending first (an operator's connection).
    pub async fn approvals(&self) -> Result<Vec<Approval>, ClientError> {
        let resp = self.request(&Request::Approvals).await?;
        expect!(resp, Response::Approvals(a) => a, "expected Approvals")
    }

    /// The rollouts, newest first (an operator's connection).
    pub async fn rollouts(&self) -> Result<Vec<RolloutStatus>, ClientError> {
        let resp = self.request(&Request::Rollouts).await?;
        expect!(resp, Response::Rollouts(r) => r, "expected Rollouts")
    }

    /// The live staged registrations (an operator's connection).
    pub async fn staged(&self) -> Result<Vec<courier_protocol::LeaseInfo>, ClientError> {
        let resp = self.request(&Request::Staged).await?;
        expect!(resp, Response::Staged(s) => s, "expected Staged")
    }

    /// What the registry asks of this client now: undos of versions from halted or
    /// aborted rollouts (a client's authenticated connection).
    pub async fn directives(&self) -> Result<Vec<Directive>, ClientError> {
        let resp = self.request(&Request::Directives).await?;
        expect!(resp, Response::Directives(d) => d, "expected Directives")
    }

    /// Reports an undo the registry asked for.
    pub async fn report_undo(&self, report: UndoReport) -> Result<(), ClientError> {
        let resp = self.request(&Request::UndoReport(report)).await?;
        expect!(resp, Response::UndoReported => (), "expected UndoReported")
    }
}
