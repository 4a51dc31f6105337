# The cluster DNS of the node (hack/node/manifests/coredns.yaml), non-root.
FROM scratch
COPY coredns /coredns
USER 65532:65532
ENTRYPOINT ["/coredns"]
