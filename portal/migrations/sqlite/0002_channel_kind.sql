-- How a channel is reached: 'GRPC' (its endpoint speaks ChannelService) or 'HTTP' (an
-- HTTP/JSON points API driven through an adapter config).
ALTER TABLE channels ADD COLUMN kind TEXT NOT NULL DEFAULT 'GRPC';
