"""The event host: the component that writes call records to the store and runs the
projection and the reactor, in-process or as a child process of each server process."""
