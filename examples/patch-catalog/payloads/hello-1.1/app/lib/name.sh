# Who hello greets (new in 1.1).
name() {
    echo "${HELLO_NAME:-world}"
}
