//! The requests about vendor roots: publishing root statements and further delegations,
//! and reading those the registry holds.

use super::{ClientError, RegistryClient};
use courier_protocol::{
    Request, Response, RootBatch, RootSince, SignedDelegation, SignedRootStatement,
};

impl RegistryClient {
    /// Publishes a root statement (the registry checks it follows the newest it holds).
    pub async fn publish_root(&self, statement: SignedRootStatement) -> Result<(), ClientError> {
        let resp = self.request(&Request::RootStatement(statement)).await?;
        expect!(resp, Response::StatementAccepted => (), "expected StatementAccepted")
    }

    /// Publishes a further delegation made by an online key under a root.
    pub async fn publish_delegation(
        &self,
        delegation: SignedDelegation,
    ) -> Result<(), ClientError> {
        let resp = self.request(&Request::Delegation(delegation)).await?;
        expect!(resp, Response::StatementAccepted => (), "expected StatementAccepted")
    }

    /// The root statements newer than each version given, and the further delegations
    /// under those roots. Nothing here is verified: the caller verifies them itself.
    pub async fn root_statements(&self, roots: Vec<RootSince>) -> Result<RootBatch, ClientError> {
        let resp = self.request(&Request::RootStatements { roots }).await?;
        expect!(resp, Response::RootStatements(b) => b, "expected RootStatements")
    }
}
