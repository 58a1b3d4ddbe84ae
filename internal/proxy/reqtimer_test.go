package proxy

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestReqTimer(t *testing.T) {
	var rt reqTimer

	// Idle: touches keep the request alive, silence cancels it with errStreamIdle.
	ctx, cancel := context.WithCancelCause(context.Background())
	rt.arm(cancel, 0, 250*time.Millisecond)
	for i := 0; i < 5; i++ {
		time.Sleep(75 * time.Millisecond) // activity pacing, not synchronization
		rt.touch()
	}
	if ctx.Err() != nil {
		t.Fatalf("cancelled despite activity: %v", context.Cause(ctx))
	}
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("idle timeout did not fire")
	}
	if !errors.Is(context.Cause(ctx), errStreamIdle) {
		t.Fatalf("cause %v, want errStreamIdle", context.Cause(ctx))
	}
	rt.disarm()

	// Route deadline wins over a longer idle timeout, whatever the activity.
	ctx, cancel = context.WithCancelCause(context.Background())
	rt.arm(cancel, monoNow()+30*time.Millisecond, time.Hour)
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("route timeout did not fire")
	}
	if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		t.Fatalf("cause %v, want context.DeadlineExceeded", context.Cause(ctx))
	}
	rt.disarm()

	// A disarmed timer cancels nothing, and reuse for a request with a long timeout is not
	// affected by the previous, short one.
	ctx, cancel = context.WithCancelCause(context.Background())
	rt.arm(cancel, 0, 10*time.Millisecond)
	rt.disarm()
	ctx2, cancel2 := context.WithCancelCause(context.Background())
	rt.arm(cancel2, 0, time.Hour)
	time.Sleep(50 * time.Millisecond) // past the first request's deadline
	if ctx.Err() != nil || ctx2.Err() != nil {
		t.Fatalf("cancelled after disarm/re-arm: %v, %v", context.Cause(ctx), context.Cause(ctx2))
	}
	rt.disarm()
	var nilTimer *reqTimer
	nilTimer.touch() // no-op
}
