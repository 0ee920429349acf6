// The Java KCL's multi-stream serializer on both sides of kinesio's items.
// Reads items from stdin ("name<TAB>type<TAB>value" lines, SS values joined by ",", a blank line
// ends an item), prints what DynamoDBMultiStreamLeaseSerializer.fromDynamoRecord reads from
// each, then prints the item its toDynamoRecord writes for one MultiStreamLease of its own.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import software.amazon.awssdk.services.dynamodb.model.AttributeValue;
import software.amazon.kinesis.leases.MultiStreamLease;
import software.amazon.kinesis.leases.dynamodb.DynamoDBMultiStreamLeaseSerializer;
import software.amazon.kinesis.retrieval.kpl.ExtendedSequenceNumber;

public class MultiStreamItems {
    public static void main(String[] args) throws Exception {
        DynamoDBMultiStreamLeaseSerializer serializer = new DynamoDBMultiStreamLeaseSerializer();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        Map<String, AttributeValue> item = new LinkedHashMap<>();
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isEmpty()) {
                MultiStreamLease lease = serializer.fromDynamoRecord(item);
                System.out.println("READ\t" + lease.leaseKey() + "\t" + lease.streamIdentifier()
                        + "\t" + lease.shardId() + "\t" + lease.checkpoint().sequenceNumber()
                        + "\t" + lease.checkpoint().subSequenceNumber() + "\t" + lease.leaseCounter()
                        + "\t" + lease.leaseOwner() + "\t" + new TreeMap<String, String>() {{
                            for (String p : lease.parentShardIds()) put(p, p);
                        }}.keySet());
                item = new LinkedHashMap<>();
                continue;
            }
            String[] f = line.split("\t", 3);
            AttributeValue v = switch (f[1]) {
                case "S" -> AttributeValue.builder().s(f[2]).build();
                case "N" -> AttributeValue.builder().n(f[2]).build();
                case "SS" -> AttributeValue.builder().ss(Arrays.asList(f[2].split(","))).build();
                default -> throw new IllegalArgumentException(f[1]);
            };
            item.put(f[0], v);
        }
        MultiStreamLease own = new MultiStreamLease();
        own.streamIdentifier("210987654321:payments:1600000000");
        own.shardId("shardId-000000000007");
        own.leaseKey(MultiStreamLease.getLeaseKey("210987654321:payments:1600000000", "shardId-000000000007"));
        own.leaseOwner("java-worker");
        own.leaseCounter(4L);
        own.checkpoint(new ExtendedSequenceNumber("49590338271490256608559692538361571095921575989136588898", 2L));
        own.ownerSwitchesSinceCheckpoint(0L);
        own.parentShardIds(new HashSet<>(new ArrayList<>(Arrays.asList("shardId-000000000001"))));
        for (Map.Entry<String, AttributeValue> e : new TreeMap<>(serializer.toDynamoRecord(own)).entrySet()) {
            AttributeValue v = e.getValue();
            if (v.s() != null) System.out.println("WROTE\t" + e.getKey() + "\tS\t" + v.s());
            else if (v.n() != null) System.out.println("WROTE\t" + e.getKey() + "\tN\t" + v.n());
            else if (v.hasSs()) System.out.println("WROTE\t" + e.getKey() + "\tSS\t" + String.join(",", v.ss()));
        }
    }
}
