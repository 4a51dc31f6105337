# kubelet's sandbox image, tagged as containerd's sandbox_image (hack/node/build.sh).
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
