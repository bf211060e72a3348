//! The gRPC face of the notifications service: find out who calls, hand the
//! request to the service, map its error. No SQL and no rules here.

use std::sync::Arc;

use roster_core::auth::Authenticator;
use roster_core::handle;
use roster_core::list::with_total_count;
use roster_proto::v1::notification_service_server::NotificationService;
use roster_proto::v1::{
    CreateNotificationRequest, CreateNotificationResponse, ListNotificationsRequest,
    ListNotificationsResponse, Notification, SubscribeNotificationsRequest,
    UpdateNotificationStatusRequest,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::service::NotificationsService;

/// Implements `NotificationService`.
#[derive(Clone)]
pub struct NotificationsApi {
    service: Arc<NotificationsService>,
    auth: Arc<Authenticator>,
}

impl NotificationsApi {
    pub fn new(service: Arc<NotificationsService>, auth: Arc<Authenticator>) -> Self {
        Self { service, auth }
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationsApi {
    async fn create(
        &self,
        request: Request<CreateNotificationRequest>,
    ) -> Result<Response<CreateNotificationResponse>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .create(&ctx, msg))
        .map(Response::new)
    }

    async fn list(
        &self,
        request: Request<ListNotificationsRequest>,
    ) -> Result<Response<ListNotificationsResponse>, Status> {
        let (notifications, total) =
            handle!(self.auth, request, |ctx, msg| self.service.list(&ctx, msg))?;
        Ok(with_total_count(notifications, total))
    }

    async fn update_status(
        &self,
        request: Request<UpdateNotificationStatusRequest>,
    ) -> Result<Response<()>, Status> {
        handle!(self.auth, request, |ctx, msg| self
            .service
            .update_status(&ctx, msg))
        .map(Response::new)
    }

    type SubscribeStream = ReceiverStream<Result<Notification, Status>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeNotificationsRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let ctx = self.auth.context(&request).await?;
        // The stream checks the caller's credential again while it is open.
        let metadata = request.metadata().clone();
        let msg = request.into_inner();
        self.service
            .subscribe(&ctx, &metadata, msg)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}
