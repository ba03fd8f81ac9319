"""The GraphQL API: schema binding, resolvers, policy and the services they delegate to."""
