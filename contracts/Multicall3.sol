// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.30;

/// @title Multicall3
/// @notice Batches read calls for clients that expect the well-known Multicall3
/// at 0xcA11bde05977b3631167028862bE2a173976CA11 (viem, and the x402 reference
/// facilitator, which reads channel state through `tryAggregate`).
/// @dev Written for Farthing against Multicall3's public ABI, for the local
/// chains only (real networks have the original). No constructor state, so
/// the runtime code is placed at that address as it is. Only the aggregate
/// calls are provided: `aggregate`, `tryAggregate` and `aggregate3`.
contract Multicall3 {
    struct Call {
        address target;
        bytes callData;
    }

    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Every call must succeed; returns the block number and each call's return data.
    function aggregate(Call[] calldata calls) external returns (uint256 blockNumber, bytes[] memory returnData) {
        blockNumber = block.number;
        returnData = new bytes[](calls.length);
        for (uint256 i = 0; i < calls.length; ++i) {
            (bool ok, bytes memory out) = calls[i].target.call(calls[i].callData);
            require(ok, "Multicall3: call failed");
            returnData[i] = out;
        }
    }

    /// @notice Like aggregate, but a failing call is reported instead of
    /// reverting the batch unless `requireSuccess` is set.
    function tryAggregate(bool requireSuccess, Call[] calldata calls) external returns (Result[] memory results) {
        results = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; ++i) {
            (bool ok, bytes memory out) = calls[i].target.call(calls[i].callData);
            require(ok || !requireSuccess, "Multicall3: call failed");
            results[i] = Result(ok, out);
        }
    }

    /// @notice Each call says whether it may fail.
    function aggregate3(Call3[] calldata calls) external returns (Result[] memory results) {
        results = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; ++i) {
            (bool ok, bytes memory out) = calls[i].target.call(calls[i].callData);
            require(ok || calls[i].allowFailure, "Multicall3: call failed");
            results[i] = Result(ok, out);
        }
    }
}
