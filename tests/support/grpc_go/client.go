// An independent gRPC client (grpc-go) for h2stream's gRPC tests: calls the example app's
// methods with raw-bytes messages and prints one JSON line of what it got.
//
// Usage: client ADDR echo|stream|upload|chat|health|unknown [ARGS]
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// rawCodec passes message bytes through: no protobuf needed on either side.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

const prefix = "/h2stream.bench.Bench/"

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: client ADDR METHOD [ARGS]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, os.Args[1], grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	out := map[string]interface{}{}
	switch os.Args[2] {
	case "echo":
		req := []byte(os.Args[3])
		var reply []byte
		err = conn.Invoke(ctx, prefix+"Echo", &req, &reply)
		out["reply"] = string(reply)
	case "unknown":
		req := []byte("x")
		var reply []byte
		err = conn.Invoke(ctx, "/no.Such/Method", &req, &reply)
	case "health":
		req := []byte{}
		var reply []byte
		err = conn.Invoke(ctx, "/grpc.health.v1.Health/Check", &req, &reply)
		out["reply"] = hex.EncodeToString(reply)
	case "stream":
		err = stream(ctx, conn, os.Args[3], out)
	case "upload":
		err = upload(ctx, conn, os.Args[3], os.Args[4], out)
	case "chat":
		err = chat(ctx, conn, os.Args[3:], out)
	default:
		fail(fmt.Errorf("unknown method %s", os.Args[2]))
	}
	st, _ := status.FromError(err)
	out["code"] = int(st.Code())
	out["message"] = st.Message()
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

func stream(ctx context.Context, conn *grpc.ClientConn, spec string, out map[string]interface{}) error {
	desc := &grpc.StreamDesc{ServerStreams: true}
	s, err := conn.NewStream(ctx, desc, prefix+"Stream")
	if err != nil {
		return err
	}
	req := []byte(spec)
	if err := s.SendMsg(&req); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	digest := sha256.New()
	count, total := 0, 0
	for {
		var msg []byte
		err := s.RecvMsg(&msg)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		count++
		total += len(msg)
		digest.Write(msg)
	}
	out["messages"], out["bytes"] = count, total
	out["sha256"] = hex.EncodeToString(digest.Sum(nil))
	return nil
}

func upload(ctx context.Context, conn *grpc.ClientConn, n, size string, out map[string]interface{}) error {
	count, _ := strconv.Atoi(n)
	length, _ := strconv.Atoi(size)
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, prefix+"Upload")
	if err != nil {
		return err
	}
	msg := make([]byte, length)
	for i := 0; i < count; i++ {
		if err := s.SendMsg(&msg); err != nil {
			return err
		}
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	var reply []byte
	if err := s.RecvMsg(&reply); err != nil {
		return err
	}
	out["reply"] = string(reply)
	return nil
}

func chat(ctx context.Context, conn *grpc.ClientConn, words []string, out map[string]interface{}) error {
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	s, err := conn.NewStream(ctx, desc, prefix+"Chat")
	if err != nil {
		return err
	}
	replies := []string{}
	for _, word := range words {
		msg := []byte(word)
		if err := s.SendMsg(&msg); err != nil {
			return err
		}
		// Each reply before the next message: the server answers as messages arrive.
		var reply []byte
		if err := s.RecvMsg(&reply); err != nil {
			return err
		}
		replies = append(replies, string(reply))
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	var extra []byte
	if err := s.RecvMsg(&extra); err != io.EOF {
		return fmt.Errorf("expected the end of the stream, got %v", err)
	}
	out["replies"] = replies
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
